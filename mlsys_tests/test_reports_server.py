"""`mlsys reports serve`: data/reports/ over HTTP, read-only. It serves the index at `/` and every report
below the folder, never a byte outside it (`..` plain or percent-encoded, symlinks out of the folder), no
folder listing, only GET and HEAD, and `Cache-Control: no-store` (the reports are rewritten daily).

The server runs for real: in a thread for the HTTP rules, as the `mlsys` command in its own session for
the command line. Requests go through http.client, which sends a path exactly as written (httpx would
remove the dot segments before they reach the server)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsys_assets.reports_server import ReportsServerError, listen, server

MLSYS = str(Path(sys.executable).with_name("mlsys"))
SECRET = b"WAREHOUSE-BYTES-MUST-NOT-LEAK"
INDEX = b"<!DOCTYPE html><h1>Monitoring reports</h1>"
REPORT = b"<!DOCTYPE html><title>Feature drift 2026-11-29</title>"


def fetch(base: tuple[str, int], path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(*base, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory with a warehouse next to reports/, and a folder outside that symlinks point to."""
    data = tmp_path / "data"
    reports = data / "reports"
    (reports / "feature_drift").mkdir(parents=True)
    (reports / "evaluation" / "ltv-1").mkdir(parents=True)
    (data / "warehouse.duckdb").write_bytes(SECRET)
    (reports / "index.html").write_bytes(INDEX)
    (reports / "feature_drift" / "2026-11-29.html").write_bytes(REPORT)
    (reports / "evaluation" / "ltv-1" / "gains.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.txt").write_bytes(SECRET)
    (reports / "leak.html").symlink_to(data / "warehouse.duckdb")
    (reports / "elsewhere").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (reports / "latest.html").symlink_to(reports / "feature_drift" / "2026-11-29.html")
    return data


def run_in_thread(reports: Path) -> Iterator[tuple[str, int]]:
    sock = listen("127.0.0.1", 0)
    running = server(reports)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the report server did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()[:2]
    finally:
        running.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def served(data_dir: Path) -> Iterator[tuple[str, int]]:
    yield from run_in_thread(data_dir / "reports")


def test_serves_the_index_at_root_and_each_report_uncached(served):
    for path, body in (("/", INDEX), ("/index.html", INDEX), ("/feature_drift/2026-11-29.html", REPORT)):
        status, headers, content = fetch(served, path)
        assert (status, content) == (200, body), path
        assert headers["content-type"].startswith("text/html"), path
        assert headers["cache-control"] == "no-store", path
    status, headers, _ = fetch(served, "/evaluation/ltv-1/gains.png")
    assert (status, headers["content-type"]) == (200, "image/png")


def test_a_missing_report_is_404_uncached(served):
    status, headers, _ = fetch(served, "/feature_drift/2026-01-01.html")
    assert status == 404
    assert headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", [
    "/../warehouse.duckdb",
    "/%2e%2e/warehouse.duckdb",
    "/..%2fwarehouse.duckdb",
    "/%2E%2E%2Fwarehouse.duckdb",
    "/feature_drift/../../warehouse.duckdb",
    "/feature_drift/%2e%2e%2f%2e%2e%2fwarehouse.duckdb",
    "/leak.html",                 # a symlink in the folder to the warehouse
    "/elsewhere/secret.txt",      # a symlinked folder outside
    "/elsewhere/",
    "//etc/passwd",
    "/%2fetc%2fpasswd",
    "/%00",
])
def test_nothing_outside_the_reports_folder_is_served(served, path: str):
    status, _, content = fetch(served, path)
    assert status == 404
    assert SECRET not in content and b"root:" not in content


def test_a_symlink_within_the_folder_is_served(served):
    assert fetch(served, "/latest.html")[::2] == (200, REPORT)


@pytest.mark.parametrize("path", ["/evaluation/", "/evaluation/ltv-1/", "/feature_drift/"])
def test_no_folder_is_listed(served, path: str):
    status, _, content = fetch(served, path)
    assert status == 404
    assert b"gains.png" not in content and b"2026-11-29" not in content


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_nothing_can_be_written(served, data_dir: Path, method: str):
    assert fetch(served, "/index.html", method)[0] == 405
    assert (data_dir / "reports" / "index.html").read_bytes() == INDEX


def test_before_the_first_report_it_says_what_to_run_and_serves_them_once_written(tmp_path: Path):
    reports = tmp_path / "data" / "reports"
    for base in run_in_thread(reports):
        status, _, content = fetch(base, "/")
        assert status == 404 and b"run `mlsys monitor` first" in content
        reports.mkdir(parents=True)
        (reports / "index.html").write_bytes(INDEX)
        assert fetch(base, "/")[::2] == (200, INDEX)


def test_a_taken_port_is_one_clear_error():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        with pytest.raises(ReportsServerError, match=r"127\.0\.0\.1:\d+: the port is taken"):
            listen("127.0.0.1", taken.getsockname()[1])


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def test_the_command_serves_the_folder_until_its_process_group_is_stopped(data_dir: Path, cli_env: dict):
    port = free_port()
    command = [MLSYS, "reports", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    process = subprocess.Popen(command, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()
            try:
                status, _, content = fetch(("127.0.0.1", port), "/")
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "`mlsys reports serve` did not answer within 60 s"
                time.sleep(0.1)
        assert (status, content) == (200, INDEX)
        second = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"Error: cannot serve the reports on 127.0.0.1:{port}: the port is taken "
            "(is `mlsys reports serve` already running? --port picks another)"]
        os.killpg(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    # uvicorn shuts down, then re-raises the signal (or exits 0 where the signal was inherited as ignored).
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert stdout.strip() == f"mlsys reports on http://127.0.0.1:{port}/ serving {data_dir / 'reports'} " \
                             "(read-only; Ctrl+C stops)"
    assert "Traceback" not in stderr
