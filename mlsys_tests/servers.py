"""Real servers for tests: a free loopback port, a process in a session of its own (so the whole group can be
stopped, and with SIGINT/SIGTERM at their defaults, which this sandbox's background processes ignore), and a
wait until it answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spawn(argv: Sequence[str], log_path: Path, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """`argv` in a new session, its output in `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            ["env", "--default-signal=INT,TERM", *argv], env=env, cwd=str(cwd or log_path.parent), stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )


@dataclass
class Service:
    """A server process in its own session."""

    process: subprocess.Popen
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.process.pid, sig)
                    self.process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
                except ProcessLookupError:
                    break
        self.process.wait()


def wait_until_ready(service: Service, path: str, timeout: float, ready: Callable[[int], bool] = lambda s: s < 500,
                     interval: float = 0.1) -> Service:
    """Poll `service.url + path` until `ready(status)`; stop the service and raise with its log if it exits or
    the timeout passes."""
    deadline = time.monotonic() + timeout
    name = " ".join(str(arg) for arg in service.process.args)
    try:
        while True:
            if service.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {service.process.returncode}:\n{service.log()}")
            try:
                if ready(httpx.get(service.url + path, timeout=2.0).status_code):
                    return service
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {timeout}s:\n{service.log()}")
            time.sleep(interval)
    except BaseException:
        service.stop()
        raise
