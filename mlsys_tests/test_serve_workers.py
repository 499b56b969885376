"""`mlsys serve --workers 2`: two worker processes share the port, both serve, keep-alive answers come without
Nagle's delay, and stopping the process group stops all of them.

The delay this guards against: on the asyncio loop uvicorn 0.54 with --workers > 1 leaves Nagle's algorithm on
(uvicorn issue 3149), and every keep-alive response then waited ~44 ms for the client's delayed ACK (measured
with `uvicorn --workers 2 --loop asyncio`; `mlsys serve` names uvloop, which sets TCP_NODELAY itself).
Helpers and the module fixtures `snapshot`, `models_v1` come from test_api.py.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsys_tests.servers import Service, free_port, spawn, wait_until_ready
from test_api import (  # noqa: F401  (snapshot, models_v1 are fixtures)
    TOKEN,
    known_ids,
    models_v1,
    payload_of,
    publish,
    save_models,
    snapshot,
    with_trend,
    write_online_store,
)

MLSYS = str(Path(sys.executable).with_name("mlsys"))
WORKERS = 2
# Well under the ~40 ms a delayed ACK adds when Nagle's algorithm holds a response back.
MEDIAN_LIMIT_MS = 15.0


def _group(pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process in the process group."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat[stat.rfind(b")") + 2:].split()[2]) == pgid and not stat[stat.rfind(b")") + 2:].startswith(b"Z"):
            found.append((int(entry), cmdline))
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory, snapshot, models_v1) -> Iterator[Service]:
    data_dir = tmp_path_factory.mktemp("serve_workers") / "data"
    write_online_store(data_dir, snapshot)
    publish(data_dir, save_models(data_dir, models_v1))
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLSYS_")}
    env.update({"MLSYS_API_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"})
    process = spawn([MLSYS, "serve", "--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(port),
                     "--data-dir", str(data_dir)], data_dir.parent / "serve.log", env)
    service = Service(process, f"http://127.0.0.1:{port}", data_dir.parent / "serve.log")
    wait_until_ready(service, "/v1/health", 120, ready=lambda status: status == 200, interval=0.1)
    try:
        yield service
    finally:
        service.stop()


def _post(path: str, body: dict) -> bytes:
    raw = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n").encode() + raw


def _keep_alive_latencies(url: str, request: bytes, count: int) -> list[float]:
    """Milliseconds per request, `count` requests one after the other on one keep-alive connection."""
    host, port = url.removeprefix("http://").split(":")
    latencies = []
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        for _ in range(count):
            started = time.perf_counter()
            connection.sendall(request)
            received = b""
            while b"\r\n\r\n" not in received:
                received += connection.recv(65536)
            head, _, body = received.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), received[:300]
            length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
                         .split(b":")[1])
            while len(body) < length:
                body += connection.recv(65536)
            latencies.append((time.perf_counter() - started) * 1e3)
    return latencies


def _workers(service: Service) -> list[int]:
    """The worker processes (uvicorn starts them with multiprocessing's spawn), once each has said it started."""
    workers = [pid for pid, cmdline in _group(service.process.pid) if "spawn_main" in cmdline]
    log = service.log()
    return workers if all(f"Started server process [{pid}]" in log for pid in workers) else []


def test_two_workers_start_and_answer_without_nagles_delay(served: Service, snapshot):
    deadline = time.monotonic() + 60
    while (len(_workers(served)) != WORKERS or served.log().count("Application startup complete") < WORKERS) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(_workers(served)) == WORKERS, (_group(served.process.pid), served.log())
    assert served.log().count("Application startup complete") == WORKERS
    customer = known_ids(snapshot, 1)[0]
    features = payload_of(with_trend(snapshot))
    medians = {}
    # Several connections, so that both workers take some (the kernel hands each new one to either).
    for path, body in (("/v1/predict", {"customer_id": customer}), ("/v1/predict/features", features)):
        latencies = []
        for _ in range(6):
            latencies += _keep_alive_latencies(served.url, _post(path, body), 15)
        medians[path] = statistics.median(latencies)
    assert all(median < MEDIAN_LIMIT_MS for median in medians.values()), medians


def test_stopping_the_process_group_stops_every_worker(tmp_path: Path, snapshot, models_v1):
    data_dir = tmp_path / "data"
    write_online_store(data_dir, snapshot)
    publish(data_dir, save_models(data_dir, models_v1))
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLSYS_")}
    env.update({"MLSYS_API_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"})
    process = spawn([MLSYS, "serve", "--workers", str(WORKERS), "--port", str(port), "--data-dir", str(data_dir)],
                    tmp_path / "serve.log", env)
    service = wait_until_ready(Service(process, f"http://127.0.0.1:{port}", tmp_path / "serve.log"), "/v1/health",
                               120, ready=lambda status: status == 200)
    try:
        assert len([pid for pid, cmdline in _group(process.pid) if "spawn_main" in cmdline]) == WORKERS
    finally:
        service.stop()
    deadline = time.monotonic() + 10
    while _group(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group(process.pid) == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
