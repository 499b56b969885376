"""How fast does the prediction API answer? Starts real uvicorn servers on a copy of the serving files,
drives them with a low-overhead keep-alive HTTP/1.1 load generator, measures reference servers beside
them, times the in-process scoring and prints p50/p95/p99 latency, requests/s, ratios and PASS/MISS
against the serving targets.

    .venv/bin/python bench/serving.py [--data-dir data] [--duration 4] [--concurrency 1,16,64] [--workers 1,2]
                                      [--mlflow-python /tmp/mlflow-venv/bin/python] [--wait-quiet 60]

What it runs, in order:
  1. copies data/serving (pointer, online store) and the production model folders to a temp dir, so a
     retrain or export during the run cannot make the server reload mid-measurement;
  2. the client's own ceiling: the same client against a trivial raw-asyncio HTTP server (a separate
     process answering a constant 11-byte JSON body without parsing anything);
  3. for each --workers count, the API as `mlsys serve --workers N` runs it (uvicorn, uvloop, httptools)
     on a free 127.0.0.1 port in its own session: GET /v1/bare (constant: the floor of this stack),
     POST /v1/predict (precomputed lookup, random known ids) and POST /v1/predict/features (on-the-fly
     scoring of real online-store rows) at each concurrency;
  4. reference servers at --baseline-concurrency: a minimal FastAPI app that looks a customer's
     features up and calls CatBoost per request (the engine's speed), and, with --mlflow-python,
     `mlflow models serve` on the production CatBoost model (from a throwaway venv holding mlflow);
  5. in-process, with no HTTP: the features request path and CatBoost alone, the pandas path it
     replaced, 1,000-row batches, the whole store, and the app driven through ASGI directly.

Client and servers share this machine's cores (2 on the project's machines): every figure includes
the client's own CPU, and the client's ceiling (step 2) says how much of a gap that alone explains.
Each run also reports the CPU that every other process on the machine used meanwhile ("others",
from /proc/stat): figures taken while other work runs are low, and the script warns about them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# control requests (health, spot checks) go straight to 127.0.0.1, whatever proxy the environment names
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Targets of the serving paths: POST /v1/predict and POST /v1/predict/features (p99 and throughput ratio: both).
TARGET_P50_C1_MS = 2.0
TARGET_FEATURES_P50_C1_MS = 1.5
TARGET_P99_C16_MS = 20.0
TARGET_RATIO_C16 = 0.5  # of GET /v1/bare on the same server
TARGET_MLFLOW_FACTOR = 10.0  # POST /v1/predict/features over `mlflow models serve` on the same model and machine

# Online-store columns that are not part of the /v1/predict/features payload.
NOT_IN_PAYLOAD = ("as_of", "customer_id", "season_sin", "season_cos")

TRIVIAL_SERVER = r"""
import asyncio, sys
try:
    import uvloop
except ImportError:
    uvloop = None
BODY = b'{"ok":true}'
RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\ncontent-type: application/json\r\n\r\n" % len(BODY)) + BODY

class Constant(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.pending = transport, b""
    def data_received(self, data):
        # GET requests only (no body): one response per blank line that ends a request head.
        data = self.pending + data
        count = data.count(b"\r\n\r\n")
        if count:
            self.transport.write(RESPONSE * count)
            data = data[data.rfind(b"\r\n\r\n") + 4:]
        self.pending = data

async def main(port):
    server = await asyncio.get_running_loop().create_server(Constant, "127.0.0.1", port)
    print("ready", flush=True)
    await server.serve_forever()

runner = uvloop.run if uvloop else asyncio.run
runner(main(int(sys.argv[1])))
"""


# --------------------------------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in the process group (the server and its workers)."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                raw = stat.read()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2:].split()
        if int(fields[2]) == pgid:  # field 5: pgrp
            ticks += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, all CPUs together, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


class ServerProcess:
    """A subprocess in its own session; stopped by process group, always."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pgid = self.proc.pid  # a session leader's pgid is its pid

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.pgid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=grace)
                # workers of a multi-process server may outlive the supervisor for a moment
                deadline = time.monotonic() + grace
                while group_alive(self.pgid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not group_alive(self.pgid):
                    break
            except subprocess.TimeoutExpired:
                continue
        self._log.close()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def wait_health(port: int, server: ServerProcess, workers: int, timeout: float = 120.0) -> dict:
    """Polls GET /v1/health over fresh connections until it says ok (workers*5 times in a row when
    several workers share the socket, since each answers for itself)."""
    deadline, in_a_row, needed, last = time.monotonic() + timeout, 0, (1 if workers == 1 else workers * 5), None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            with _DIRECT.open(f"http://{HOST}:{port}/v1/health", timeout=2) as response:
                last = json.loads(response.read())
            in_a_row = in_a_row + 1 if last.get("status") == "ok" else 0
            if in_a_row >= needed:
                return last
        except OSError:
            in_a_row = 0
        time.sleep(0.1)
    raise RuntimeError(f"/v1/health not ok after {timeout:.0f} s (last: {last}):\n{server.log_tail()}")


def start_api(data_root: Path, token: str, workers: int, log_path: Path, app: str, loop: str,
              http: str) -> tuple[ServerProcess, int, dict]:
    port = free_port()
    # the reloader keeps its default interval (it only stat()s two files of the private copy, which never change)
    env = {**os.environ, "MLSYS_DATA_DIR": str(data_root), "MLSYS_API_TOKEN": token}
    argv = [sys.executable, "-m", "uvicorn", "--factory", app,
            "--host", HOST, "--port", str(port), "--workers", str(workers), "--loop", loop, "--http", http,
            "--no-access-log", "--log-level", "warning"]
    server = ServerProcess(argv, env, log_path)
    try:
        health = wait_health(port, server, workers)
    except BaseException:
        server.stop()
        raise
    return server, port, health


def start_trivial(log_path: Path) -> tuple[ServerProcess, int]:
    port = free_port()
    server = ServerProcess([sys.executable, "-c", TRIVIAL_SERVER, str(port)], dict(os.environ), log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the trivial server exited:\n{server.log_tail()}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return server, port
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("the trivial server did not listen within 30 s")


# --------------------------------------------------------------------------------------------------
# Load generator: one raw keep-alive HTTP/1.1 connection per concurrent worker
# --------------------------------------------------------------------------------------------------

def http_get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def http_post(path: str, body: bytes, token: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


@dataclass
class RunResult:
    label: str
    concurrency: int
    requests: int
    seconds: float
    latencies_ns: list[int]
    statuses: dict[int, int]
    errors: int
    client_cpu: float
    server_cpu: float | None
    machine_busy: float = 0.0  # CPU seconds used by every process on the machine during the run
    steal: float = 0.0
    first_bad: bytes = b""

    @property
    def other_cpu(self) -> float:
        """CPU seconds of processes other than this client and the server (other work on the machine)."""
        return max(0.0, self.machine_busy - self.client_cpu - (self.server_cpu or 0.0))

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct_ms(self, q: float) -> float:
        if not self.latencies_ns:
            return math.nan
        ordered = self.latencies_ns  # sorted by finish()
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))] / 1e6

    @property
    def non_200(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200) + self.errors

    def finish(self) -> RunResult:
        self.latencies_ns.sort()
        return self


class _Shared:
    __slots__ = ("issued", "max_requests", "deadline")

    def __init__(self, max_requests: int, deadline: int):
        self.issued, self.max_requests, self.deadline = 0, max_requests, deadline


async def _connection_worker(port: int, reader, writer, requests: list[bytes], shared: _Shared, seed: int,
                             latencies: list[int], statuses: dict[int, int], bad: list[bytes]) -> int:
    """Sends one request at a time on its connection; returns the number of transport errors."""
    clock, rnd, count = time.perf_counter_ns, random.Random(seed).randrange, len(requests)
    buffer = bytearray()
    errors = 0
    while shared.issued < shared.max_requests and clock() < shared.deadline:
        shared.issued += 1
        request = requests[rnd(count)]
        started = clock()
        writer.write(request)
        try:
            while True:
                head_end = buffer.find(b"\r\n\r\n")
                if head_end >= 0:
                    head = bytes(buffer[:head_end]).lower()
                    at = head.find(b"\r\ncontent-length:")
                    if at < 0:
                        raise ConnectionError(f"response without Content-Length: {head[:200]!r}")
                    line_end = head.find(b"\r\n", at + 2)
                    length = int(head[at + 17: line_end if line_end >= 0 else len(head)])
                    total = head_end + 4 + length
                    if len(buffer) >= total:
                        break
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                buffer += chunk
        except (ConnectionError, OSError, ValueError):
            errors += 1
            writer.close()
            reader, writer = await asyncio.open_connection(HOST, port)
            buffer.clear()
            continue
        latencies.append(clock() - started)
        status = int(buffer[9:12])
        statuses[status] = statuses.get(status, 0) + 1
        if status != 200 and not bad:
            bad.append(bytes(buffer[:total]))
        if b"\r\nconnection: close" in head:
            writer.close()
            reader, writer = await asyncio.open_connection(HOST, port)
            buffer.clear()
        else:
            del buffer[:total]
    writer.close()
    return errors


async def _load(port: int, requests: list[bytes], concurrency: int, duration: float, max_requests: int,
                seed: int) -> tuple[int, float, list[int], dict[int, int], int, list[bytes]]:
    connections = [await asyncio.open_connection(HOST, port) for _ in range(concurrency)]
    latencies: list[int] = []
    statuses: dict[int, int] = {}
    bad: list[bytes] = []
    started = time.perf_counter_ns()
    shared = _Shared(max_requests, started + int(duration * 1e9))
    errors = await asyncio.gather(*(
        _connection_worker(port, reader, writer, requests, shared, seed + i, latencies, statuses, bad)
        for i, (reader, writer) in enumerate(connections)
    ))
    seconds = (time.perf_counter_ns() - started) / 1e9
    return len(latencies), seconds, latencies, statuses, sum(errors), bad


def _event_loop_runner(client_loop: str):
    if client_loop == "uvloop":
        import uvloop
        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    return asyncio.Runner()


def wait_quiet(max_seconds: float, threshold_cores: float = 0.15) -> float | None:
    """Waits (at most max_seconds) until the machine's busy CPU over one second is under
    threshold_cores; returns the seconds waited, None when it never got quiet (measure anyway)."""
    if max_seconds <= 0:
        return 0.0
    started = time.monotonic()
    while time.monotonic() - started < max_seconds:
        before, _ = system_busy_seconds()
        time.sleep(1.0)
        after, _ = system_busy_seconds()
        if after - before < threshold_cores:
            return time.monotonic() - started
    return None


def run_load(label: str, port: int, requests: list[bytes], concurrency: int, duration: float,
             max_requests: int, client_loop: str, server: ServerProcess | None, seed: int = 0) -> RunResult:
    gc.collect()
    gc.disable()  # the client allocates no cycles worth collecting in a few seconds
    try:
        with _event_loop_runner(client_loop) as runner:
            server_cpu0, client_cpu0 = (server.cpu_seconds() if server else 0.0), time.process_time()
            busy0, steal0 = system_busy_seconds()
            count, seconds, latencies, statuses, errors, bad = runner.run(
                _load(port, requests, concurrency, duration, max_requests, seed))
            busy1, steal1 = system_busy_seconds()
            client_cpu = time.process_time() - client_cpu0
            server_cpu = (server.cpu_seconds() - server_cpu0) if server else None
    finally:
        gc.enable()
    return RunResult(label, concurrency, count, seconds, latencies, statuses, errors, client_cpu, server_cpu,
                     busy1 - busy0, steal1 - steal0, bad[0] if bad else b"").finish()


# --------------------------------------------------------------------------------------------------
# Data: a private copy of the serving files, request bodies
# --------------------------------------------------------------------------------------------------

def stage_serving_copy(data_dir: Path, into: Path) -> Path:
    """Copies the pointer, the online store and the pointed-to model folders; returns the data root."""
    source = data_dir / "serving"
    pointer = json.loads((source / "production.json").read_text())
    serving = into / "serving"
    serving.mkdir(parents=True)
    shutil.copy2(source / "online_features.parquet", serving / "online_features.parquet")
    for name, entry in pointer["models"].items():
        model_dir = Path(entry["path"])
        if not model_dir.is_absolute():
            model_dir = (Path.cwd() / model_dir) if (Path.cwd() / model_dir).exists() else REPO / model_dir
        target = into / "models" / name / entry["version"]
        shutil.copytree(model_dir, target)
        entry["path"] = str(target)
    (serving / "production.json").write_text(json.dumps(pointer, indent=2))
    return into


def feature_payloads(store, limit: int = 256) -> tuple[list[bytes], dict]:
    """JSON bodies for /v1/predict/features from real online-store rows (NaN -> null). Rows whose
    NaN falls on a field the payload schema does not accept as null are counted and skipped."""
    from mlsys_assets.api.schemas import FeaturePayload

    nullable = {name for name, f in FeaturePayload.model_fields.items() if not f.is_required() and f.default is None}
    columns = [c for c in store.columns if c not in NOT_IN_PAYLOAD and not c.startswith("rfm_")]
    unknown = sorted(set(columns) - set(FeaturePayload.model_fields))
    rows, skipped, skipped_by = [], 0, {}
    for record in store[["customer_id", *columns]].to_dict("records"):
        body, refused = {}, []
        for name in columns:
            value = record[name]
            if isinstance(value, float) and math.isnan(value):
                value = None
                if name not in nullable:
                    refused.append(name)
            elif hasattr(value, "item"):
                value = value.item()
            body[name] = value
        if refused:
            skipped += 1
            for name in refused:
                skipped_by[name] = skipped_by.get(name, 0) + 1
            continue
        rows.append((record["customer_id"], json.dumps(body, separators=(",", ":")).encode()))
    rng = random.Random(7)
    rng.shuffle(rows)
    info = {"rows": len(store), "usable_rows": len(rows), "skipped_rows": skipped, "skipped_by_field": skipped_by,
            "unknown_columns": unknown, "columns": columns, "sample_customer": rows[0][0] if rows else None}
    return [body for _, body in rows[:limit]], info


# --------------------------------------------------------------------------------------------------
# In-process measurements (no HTTP)
# --------------------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def in_process_scoring(serving: Path, store, payload_bodies: list[bytes], calls: int) -> dict:
    """Where a features request's time goes, in process: the request path (payload -> feature row ->
    ProductionModels.score_rows, no pandas), CatBoost alone on the same input, the pandas path it replaced
    (one-row DataFrame -> ProductionModels.score), batches of 1,000 rows both ways, and the whole store."""
    import pandas as pd

    from mlsys_assets.api.features import feature_row
    from mlsys_assets.api.schemas import FeaturePayload
    from mlsys_assets.ml.scoring import ProductionModels

    models = ProductionModels.load(serving)
    served_day = pd.Timestamp(store["as_of"].iloc[0]).date()
    payloads = [FeaturePayload.model_validate_json(body) for body in payload_bodies]
    rows = [feature_row(payload, served_day) for payload in payloads]
    clock = time.perf_counter_ns

    def timed(function, items: list, repeat: int) -> list[float]:
        for item in items[:20]:
            function(item)  # warm-up
        times = []
        for i in range(repeat):
            item = items[i % len(items)]
            t0 = clock()
            function(item)
            times.append((clock() - t0) / 1e6)
        return times

    request_path = timed(lambda payload: models.score_rows([feature_row(payload, served_day)]), payloads, calls)
    catboost = {m.version.model: timed(lambda row, m=m: m.forecaster.model.predict(
        m.forecaster.rows_input([row]), prediction_type="RawFormulaVal", thread_count=1), rows, calls)
        for m in (models.ltv, models.churn) if not m.is_btyd}
    frames = [store.iloc[[i]] for i in range(min(len(store), 256))]
    pandas_path = timed(models.score, frames, calls)
    batch_rows = [rows[i % len(rows)] for i in range(1000)]
    batch_frame = store.iloc[[i % len(store) for i in range(1000)]]
    batch_rows_ms = timed(models.score_rows, [batch_rows], 10)
    batch_frame_ms = timed(models.score, [batch_frame], 10)
    whole = timed(models.score, [store], 5)
    return {
        "calls": calls, "request_path_p50_ms": percentile(request_path, 50),
        "request_path_p95_ms": percentile(request_path, 95),
        "catboost_p50_ms": {name: percentile(times, 50) for name, times in catboost.items()},
        "pandas_path_p50_ms": percentile(pandas_path, 50),
        "batch_1000_rows_ms": statistics.median(batch_rows_ms), "batch_1000_frame_ms": statistics.median(batch_frame_ms),
        "whole_rows": len(store), "whole_median_s": statistics.median(whole) / 1e3,
        "whole_rows_per_s": len(store) / (statistics.median(whole) / 1e3),
    }


def in_process_asgi(factory_path: str, data_root: Path, token: str, customer_ids: list[str], feature_body: bytes,
                    calls: int) -> dict | None:
    """Drives the served app (the same uvicorn factory) through ASGI with no socket and no HTTP
    parsing: the framework and handler cost per request, which a single uvicorn worker pays on its
    one core. None when the app's StateHolder cannot be found to load it without its lifespan."""
    import importlib

    module_name, _, attribute = factory_path.partition(":")
    saved = {k: os.environ.get(k) for k in ("MLSYS_DATA_DIR", "MLSYS_API_TOKEN", "MLSYS_API_RELOAD_SECONDS")}
    os.environ.update(MLSYS_DATA_DIR=str(data_root), MLSYS_API_TOKEN=token, MLSYS_API_RELOAD_SECONDS="3600")
    try:
        app = getattr(importlib.import_module(module_name), attribute)()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    # the package wraps FastAPI in BearerGate and BodySizeLimit; load the state without the lifespan's thread
    inner = app
    while not hasattr(getattr(inner, "state", None), "holder") and hasattr(inner, "app"):
        inner = inner.app
    holder = getattr(getattr(inner, "state", None), "holder", None)
    if holder is None:
        return None
    holder.try_reload()

    def scope(method: str, path: str, body: bytes) -> dict:
        headers = [(b"host", HOST.encode())]
        if method == "POST":
            headers += [(b"authorization", f"Bearer {token}".encode()), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())]
        return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
                "query_string": b"", "headers": headers, "client": (HOST, 50000), "server": (HOST, 80),
                "state": {}}

    async def one(method: str, path: str, body: bytes) -> int:
        status = 0
        sent = False

        async def receive():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope(method, path, body), receive, send)
        return status

    async def measure(method: str, path: str, bodies: list[bytes], n: int) -> tuple[float, int]:
        for body in bodies[:50]:
            await one(method, path, body)
        bad, clock, times = 0, time.perf_counter_ns, []
        for i in range(n):
            t0 = clock()
            bad += (await one(method, path, bodies[i % len(bodies)])) != 200
            times.append((clock() - t0) / 1e3)
        return statistics.median(times), bad

    predict_bodies = [json.dumps({"customer_id": c}).encode() for c in customer_ids[:1000]]

    async def main():
        return {
            "bare": await measure("GET", "/v1/bare", [b""], calls),
            "predict": await measure("POST", "/v1/predict", predict_bodies, calls),
            "features": await measure("POST", "/v1/predict/features", [feature_body], max(50, calls // 10)),
        }

    gc.collect()
    results = asyncio.run(main())
    return {name: {"p50_us": us, "non_200": bad} for name, (us, bad) in results.items()}


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------

def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    import uvicorn
    return {"nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)), "cpu": model, "memory": memory,
            "python": sys.version.split()[0], "uvicorn": uvicorn.__version__}


def row_text(result: RunResult) -> str:
    share = lambda seconds: f"{seconds / result.seconds * 100:6.0f}%"  # noqa: E731  (% of one core)
    busy = (f"{share(result.server_cpu or 0.0)} {share(result.client_cpu)} {share(result.other_cpu)}"
            f" {(result.server_cpu or 0.0) / max(result.requests, 1) * 1e6:7.0f}")
    bad = ",".join(f"{s}:{n}" for s, n in sorted(result.statuses.items()) if s != 200)
    if result.errors:
        bad = (bad + "," if bad else "") + f"err:{result.errors}"
    return (f"{result.label:<28} {result.concurrency:>4} {result.requests:>8} {result.rps:>9.0f} "
            f"{result.pct_ms(50):>8.2f} {result.pct_ms(95):>8.2f} {result.pct_ms(99):>8.2f} {result.pct_ms(100):>8.2f} "
            f"{busy}  {bad or '0'}")


HEADER = (f"{'target':<28} {'conc':>4} {'requests':>8} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'srv cpu':>7} {'cli cpu':>7} {'others':>7} {'srv us':>7}  non-200")


def _exit_on_sigterm(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data", help="the data dir whose serving/ is benchmarked (copied)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per load run (at most 60)")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated connection counts")
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap per load run")
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated uvicorn --workers counts, each a server of its own (as `mlsys serve "
                             "--workers N`); with --loop asyncio and N > 1 uvicorn issue 3149 shows (~44 ms)")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="uvloop",
                        help="uvicorn --loop (default uvloop, as `mlsys serve` runs)")
    parser.add_argument("--http", choices=("auto", "h11", "httptools"), default="httptools",
                        help="uvicorn --http (default httptools, as `mlsys serve` runs)")
    parser.add_argument("--app", default="mlsys_assets.api.app:app_from_env",
                        help="uvicorn factory to serve (to compare a candidate change against the package's app)")
    parser.add_argument("--baseline-concurrency", default="1,16", help="connection counts for the reference servers")
    parser.add_argument("--mlflow-python", type=Path, metavar="PYTHON",
                        help="the python of a throwaway venv with mlflow and catboost: also measures `mlflow models "
                             "serve` on the production CatBoost model (otherwise only the minimal app is measured)")
    parser.add_argument("--score-calls", type=int, default=300, help="in-process single-row calls")
    parser.add_argument("--client-loop", choices=("uvloop", "asyncio"), default=None,
                        help="event loop of the load generator (default: uvloop if installed)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each measured run, wait up to this long for the rest of the machine to be idle "
                             "(< 0.15 core over 1 s): for shared machines; 0 = never wait")
    parser.add_argument("--skip-ceiling", action="store_true", help="skip the trivial-server ceiling runs")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args()
    if not 0 < args.duration <= 60:
        parser.error("--duration must be in (0, 60]")
    if not 0 <= args.wait_quiet <= 600:
        parser.error("--wait-quiet must be in [0, 600]")
    if not 0 < args.max_requests <= 2_000_000:
        parser.error("--max-requests must be in (0, 2000000]")
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.baseline_levels = [int(c) for c in args.baseline_concurrency.split(",") if c.strip()]
    args.worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    if not args.levels or min(args.levels + args.baseline_levels) < 1 or max(args.levels + args.baseline_levels) > 512:
        parser.error("concurrency levels must be in [1, 512]")
    if not args.worker_counts or min(args.worker_counts) < 1:
        parser.error("--workers: counts of at least 1")
    if args.client_loop is None:
        try:
            import uvloop  # noqa: F401
            args.client_loop = "uvloop"
        except ImportError:
            args.client_loop = "asyncio"
    args.data_dir = Path(args.data_dir).resolve()
    if not (args.data_dir / "serving" / "production.json").exists():
        parser.error(f"{args.data_dir}/serving/production.json not found: run `make demo` first")
    return args


@dataclass
class Workload:
    """The request bytes of every measured route."""

    bare: list[bytes]
    predict: list[bytes]
    features: list[bytes]
    feature_bodies: list[bytes]
    payload_info: dict
    lookup: list[bytes]  # the minimal app: {"customer_id"}


def workload(store, token: str) -> Workload:
    customer_ids = store["customer_id"].astype(str).tolist()
    rng = random.Random(1)
    chosen = [rng.choice(customer_ids) for _ in range(4096)]
    bodies, info = feature_payloads(store)
    return Workload(
        bare=[http_get("/v1/bare")],
        predict=[http_post("/v1/predict", json.dumps({"customer_id": c}).encode(), token) for c in chosen],
        features=[http_post("/v1/predict/features", body, token) for body in bodies],
        feature_bodies=bodies, payload_info=info,
        lookup=[http_post("/score", json.dumps({"customer_id": c}).encode(), token) for c in chosen[:1024]],
    )


def measure_api(args, data_root: Path, token: str, work: Workload, workers: int, log_path: Path, quiet,
                report: dict) -> list[RunResult]:
    """The API with `workers` processes: /v1/bare, /v1/predict, /v1/predict/features at every level."""
    suffix = f" w={workers}"
    print(f"starting uvicorn ({workers} worker{'s' if workers > 1 else ''}, loop {args.loop}, http {args.http}) ...",
          flush=True)
    api, port, health = start_api(data_root, token, workers, log_path, args.app, args.loop, args.http)
    results = []
    try:
        print(f"  /v1/health ok: {health.get('customers')} customers, models {health.get('models')}")
        if work.feature_bodies and "spot_check" not in report:
            report["spot_check"] = spot_check(port, token, work.payload_info["sample_customer"], work.feature_bodies[0])
        for requests in (work.predict, work.bare, work.features):
            run_load("warm-up", port, requests, 16, 0.5, args.max_requests, args.client_loop, api)
        for level in args.levels:
            for label, requests in (("GET /v1/bare", work.bare), ("POST /v1/predict", work.predict),
                                    ("POST /v1/predict/features", work.features)):
                quiet(f"{label}{suffix} c={level}")
                results.append(run_load(label + suffix, port, requests, level, args.duration, args.max_requests,
                                        args.client_loop, api, seed=level))
    finally:
        api.stop()
        tail = api.log_tail(10).strip()
        if tail:
            print("  server log (tail):\n    " + tail.replace("\n", "\n    "))
    return results


MINIMAL_APP = r"""
# The reference for "CatBoost at the engine's speed": a minimal FastAPI app that looks a customer's features up
# (ready in the models' order) and calls CatBoost per request, nothing else (no auth, validation or blending).
import json, os
from pathlib import Path
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response
from mlsys_assets.ml.scoring import ProductionModels
serving = Path(os.environ["BENCH_SERVING"])
models = ProductionModels.load(serving)
store = pd.read_parquet(serving / "online_features.parquet")
records = {r["customer_id"]: {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
           for r in store.to_dict("records")}
served = [m for m in (models.ltv, models.churn) if not m.is_btyd]
rows = {name: {c: m.forecaster.rows_input([r])[0] for c, r in records.items()} for name, m in
        ((m.version.model, m) for m in served)}
app = FastAPI()

@app.post("/score")
async def score(request: Request) -> Response:
    customer = json.loads(await request.body())["customer_id"]
    out = {m.version.model: float(m.forecaster.model.predict(rows[m.version.model][customer], thread_count=1))
           for m in served}
    return Response(json.dumps(out), media_type="application/json")
"""

MLFLOW_EXPORT = r"""
import sys, mlflow.catboost
from catboost import CatBoostClassifier, CatBoostRegressor
model_file, kind, target = sys.argv[1:4]
model = (CatBoostClassifier if kind == "classifier" else CatBoostRegressor)()
model.load_model(model_file)
mlflow.catboost.save_model(model, target)
"""


def start_plain(argv: list[str], port: int, path: str, log_path: Path, env: dict, timeout: float = 180.0,
                method: str = "GET") -> ServerProcess:
    server = ServerProcess(argv, env, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{argv[:4]} exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            with _DIRECT.open(urllib.request.Request(f"http://{HOST}:{port}{path}", method=method), timeout=2):
                return server
        except urllib.error.HTTPError:
            return server  # it answers
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{argv[:4]} did not answer within {timeout:.0f} s:\n{server.log_tail()}")


def measure_minimal_app(args, serving: Path, tmp: Path, work: Workload, quiet) -> list[RunResult]:
    (tmp / "minimal_app.py").write_text(MINIMAL_APP)
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(tmp), "minimal_app:app", "--host", HOST,
            "--port", str(port), "--loop", args.loop, "--http", args.http, "--no-access-log", "--log-level", "warning"]
    server = start_plain(argv, port, "/docs", tmp / "minimal.log", {**os.environ, "BENCH_SERVING": str(serving)})
    results = []
    try:
        run_load("warm-up", port, work.lookup, 16, 0.5, args.max_requests, args.client_loop, server)
        for level in args.baseline_levels:
            quiet(f"minimal app c={level}")
            results.append(run_load("minimal app: lookup+CatBoost", port, work.lookup, level, args.duration,
                                    args.max_requests, args.client_loop, server, seed=level))
    finally:
        server.stop()
    return results


def measure_mlflow(args, serving: Path, tmp: Path, store, quiet) -> list[RunResult]:
    """`mlflow models serve` (--env-manager local, its defaults otherwise) on the production CatBoost model,
    POST /invocations with one real row per request (dataframe_split)."""
    pointer = json.loads((serving / "production.json").read_text())
    name, entry = next((n, e) for n, e in pointer["models"].items()
                       if json.loads((Path(e["path"]) / "card.json").read_text()).get("kind") != "btyd")
    card = json.loads((Path(entry["path"]) / "card.json").read_text())
    features, categorical = card["features"], set(card.get("categorical_features", []))
    target = tmp / "mlflow_model"
    subprocess.run([str(args.mlflow_python), "-c", MLFLOW_EXPORT, str(Path(entry["path"]) / "model.cbm"),
                    "classifier" if name == "churn" else "regressor", str(target)], check=True, cwd=tmp,
                   stdout=subprocess.DEVNULL)
    complete = store.dropna(subset=features)
    bodies = [json.dumps({"dataframe_split": {"columns": features, "data": [[
        str(r[f]) if f in categorical else float(r[f]) for f in features]]}}).encode()
        for r in complete.head(256).to_dict("records")]
    requests = [http_post("/invocations", body, "unused") for body in bodies]
    port = free_port()
    argv = [str(args.mlflow_python), "-m", "mlflow", "models", "serve", "-m", str(target), "--env-manager", "local",
            "--host", HOST, "--port", str(port)]
    # mlflow runs `uvicorn` from PATH: the venv's own
    env = {**os.environ, "PATH": f"{args.mlflow_python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = start_plain(argv, port, "/ping", tmp / "mlflow.log", env)
    results = []
    try:
        run_load("warm-up", port, requests, 4, 1.0, args.max_requests, args.client_loop, server)
        for level in args.baseline_levels:
            quiet(f"mlflow c={level}")
            results.append(run_load(f"mlflow models serve ({name})", port, requests, level, args.duration,
                                    args.max_requests, args.client_loop, server, seed=level))
    finally:
        server.stop()
    return results


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args()
    import pandas as pd

    facts = machine()
    print(f"machine: {facts['nproc']} CPUs ({facts['usable_cpus']} usable), {facts['cpu']}, {facts['memory']} RAM; "
          f"Python {facts['python']}, uvicorn {facts['uvicorn']}; client loop: {args.client_loop}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    report: dict = {"machine": facts, "args": {k: str(v) for k, v in vars(args).items()}}
    token = secrets.token_hex(16)

    def quiet(what: str) -> None:
        if args.wait_quiet > 0:
            waited = wait_quiet(args.wait_quiet)
            if waited is None:
                print(f"  {what}: the machine was not idle within {args.wait_quiet:g} s; measuring anyway", flush=True)
            elif waited > 1.5:
                print(f"  {what}: waited {waited:.0f} s for the machine to be idle", flush=True)

    ceiling, results, baselines = [], [], []
    with tempfile.TemporaryDirectory(prefix="mlsys-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data_root = stage_serving_copy(args.data_dir, tmp / "data")
        serving = data_root / "serving"
        store = pd.read_parquet(serving / "online_features.parquet")
        work = workload(store, token)
        report["feature_payloads"] = work.payload_info
        print(f"serving copy: {len(store):,} customers in the online store; /v1/predict/features payloads from "
              f"{work.payload_info['usable_rows']:,} usable rows ({work.payload_info['skipped_rows']:,} skipped: NaN "
              f"in a non-nullable payload field {work.payload_info['skipped_by_field']})")
        gc.collect()
        gc.freeze()  # pandas & co. stay out of the client's collections
        if not args.skip_ceiling:
            ceiling = measure_ceiling(args, tmp, work, quiet)
        for workers in args.worker_counts:
            results += measure_api(args, data_root, token, work, workers, tmp / f"uvicorn-{workers}.log", quiet, report)
        baselines += measure_minimal_app(args, serving, tmp, work, quiet)
        if args.mlflow_python:
            baselines += measure_mlflow(args, serving, tmp, store, quiet)
        quiet("in-process measurements")
        print("in-process measurements ...", flush=True)
        scoring = in_process_scoring(serving, store, work.feature_bodies, args.score_calls)
        asgi = in_process_asgi(args.app, data_root, token, store["customer_id"].astype(str).tolist(),
                               work.feature_bodies[0] if work.feature_bodies else b"{}", 2000)
    targets = print_report(args, ceiling, results, baselines, scoring, asgi, report)
    if args.json:
        report["runs"] = [run_dict(r) for r in [*ceiling, *results, *baselines]]
        report["in_process"] = {"scoring": scoring, "asgi": asgi}
        report["targets"] = [{"name": n, "value": v, "target": g, "pass": ok} for n, v, g, ok in targets]
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwrote {args.json}")
    return 0


def measure_ceiling(args, tmp: Path, work: Workload, quiet) -> list[RunResult]:
    trivial, port = start_trivial(tmp / "trivial.log")
    ceiling = []
    try:
        run_load("warm-up", port, work.bare, 4, 0.5, args.max_requests, args.client_loop, trivial)
        for level in args.levels:
            quiet(f"ceiling c={level}")
            ceiling.append(run_load("trivial asyncio GET (ceiling)", port, work.bare, level, args.duration,
                                    args.max_requests, args.client_loop, trivial))
    finally:
        trivial.stop()
    return ceiling


def print_report(args, ceiling, results, baselines, scoring, asgi, report) -> list[tuple]:
    cores = len(os.sched_getaffinity(0))
    print()
    print(f"HTTP load ({args.duration:g} s per run, at most {args.max_requests:,} requests; one keep-alive "
          f"connection per concurrent client. srv cpu, cli cpu: the server's and this client's CPU as % of one core; "
          f"others: every other process on the machine (% of one core, of {cores * 100}%); srv us: server CPU "
          f"microseconds per request)")
    print(HEADER)
    for result in [*ceiling, *results, *baselines]:
        print(row_text(result))
    for result in [*results, *baselines]:
        if result.first_bad:
            print(f"  first non-200 answer of {result.label} c={result.concurrency}: {result.first_bad[:300]!r}")
    everything = [*ceiling, *results, *baselines]
    busy = [r for r in everything if r.other_cpu / r.seconds > 0.25]
    if busy:
        worst = max(r.other_cpu / r.seconds for r in busy) * 100
        print(f"  WARNING: other processes used more than 25% of one core during {len(busy)} of {len(everything)} "
              f"runs (up to {worst:.0f}%): those figures are low; see 'others'. Re-run with --wait-quiet.")
    print()
    print("In-process, no HTTP (same serving copy; the HTTP servers are stopped by now):")
    print(f"  features request path (payload -> feature_row -> score_rows, no pandas): p50 "
          f"{scoring['request_path_p50_ms']:.3f} ms, p95 {scoring['request_path_p95_ms']:.3f} ms")
    print("    of which CatBoost predict on the same row (thread_count=1): " + ", ".join(
        f"{name} {ms:.3f} ms" for name, ms in scoring["catboost_p50_ms"].items()) + " (p50)")
    print(f"  the pandas path it replaced (one-row DataFrame -> ProductionModels.score): p50 "
          f"{scoring['pandas_path_p50_ms']:.3f} ms")
    print(f"  1,000 rows: score_rows {scoring['batch_1000_rows_ms']:.1f} ms, score (DataFrame) "
          f"{scoring['batch_1000_frame_ms']:.1f} ms; whole store {scoring['whole_rows']:,} rows in "
          f"{scoring['whole_median_s']:.3f} s = {scoring['whole_rows_per_s']:,.0f} rows/s")
    if asgi:
        print(f"  the served app via ASGI (no socket, no HTTP parsing), median per request: "
              f"GET /v1/bare {asgi['bare']['p50_us']:.0f} us, POST /v1/predict {asgi['predict']['p50_us']:.0f} us, "
              f"POST /v1/predict/features {asgi['features']['p50_us']:.0f} us"
              + ("" if not any(v["non_200"] for v in asgi.values()) else f" (non-200: {asgi})"))
    if report.get("spot_check"):
        c = report["spot_check"]
        print(f"  spot check {c['customer_id']}: /v1/predict {c['precomputed']} vs /v1/predict/features "
              f"{c['on_the_fly']} -> {'equal' if c['equal'] else 'DIFFERENT'}")
    return print_targets(results, baselines)


def print_targets(results: list[RunResult], baselines: list[RunResult]) -> list[tuple]:
    by = {(r.label, r.concurrency): r for r in [*results, *baselines]}
    workers = sorted({int(r.label.rsplit("w=", 1)[1]) for r in results})
    print()
    print("Ratios at c=16 (same run):")
    for w in workers:
        bare, predict, features = (by.get((f"{route} w={w}", 16)) for route in
                                   ("GET /v1/bare", "POST /v1/predict", "POST /v1/predict/features"))
        if bare and predict and features:
            print(f"  w={w}: /v1/predict / /v1/bare = {predict.rps / bare.rps:.2f}; /v1/predict/features / /v1/bare = "
                  f"{features.rps / bare.rps:.2f}")
    if len(workers) > 1:
        for route in ("GET /v1/bare", "POST /v1/predict", "POST /v1/predict/features"):
            one, more = by.get((f"{route} w={workers[0]}", 16)), by.get((f"{route} w={workers[-1]}", 16))
            if one and more:
                print(f"  {route}: w={workers[-1]} / w={workers[0]} = {more.rps / one.rps:.2f}")
    features16 = by.get(("POST /v1/predict/features w=1", 16))
    for baseline in [r for r in baselines if r.concurrency == 16]:
        if features16:
            print(f"  /v1/predict/features w=1 / {baseline.label} = {features16.rps / baseline.rps:.1f}")
    targets = []

    def target(name: str, run: RunResult | None, value: str, goal: str, ok) -> None:
        if run is not None:
            targets.append((name, value, goal, bool(ok) and run.non_200 == 0))

    for w in workers:
        b16 = by.get((f"GET /v1/bare w={w}", 16))
        for name, route, p50_goal_ms in (("features", "POST /v1/predict/features", TARGET_FEATURES_P50_C1_MS),
                                         ("predict", "POST /v1/predict", TARGET_P50_C1_MS)):
            r1, r16 = by.get((f"{route} w={w}", 1)), by.get((f"{route} w={w}", 16))
            if r16 and b16:
                target(f"{name} c=16 / bare c=16 (w={w})", r16, f"{r16.rps:,.0f} / {b16.rps:,.0f} = {r16.rps / b16.rps:.2f}",
                       f">= {TARGET_RATIO_C16:g}", r16.rps / b16.rps >= TARGET_RATIO_C16)
                target(f"{name} p99 at c=16 (w={w})", r16, f"{r16.pct_ms(99):.2f} ms", f"< {TARGET_P99_C16_MS:g} ms",
                       r16.pct_ms(99) < TARGET_P99_C16_MS)
            if r1:
                target(f"{name} p50 at c=1 (w={w})", r1, f"{r1.pct_ms(50):.2f} ms", f"< {p50_goal_ms:g} ms",
                       r1.pct_ms(50) < p50_goal_ms)
    mlflow16 = next((r for r in baselines if r.label.startswith("mlflow") and r.concurrency == 16), None)
    if features16 and mlflow16:
        target("features c=16 / mlflow models serve c=16", features16,
               f"{features16.rps:,.0f} / {mlflow16.rps:,.0f} = {features16.rps / mlflow16.rps:.1f}",
               f">= {TARGET_MLFLOW_FACTOR:g}", features16.rps / mlflow16.rps >= TARGET_MLFLOW_FACTOR)
    print()
    print("Targets:")
    for name, value, goal, ok in targets:
        print(f"  {'PASS' if ok else 'MISS'}  {name:<44} {value:<28} target {goal}")
    return targets


def run_dict(result: RunResult) -> dict:
    return {"label": result.label, "concurrency": result.concurrency, "requests": result.requests,
            "seconds": round(result.seconds, 3), "rps": round(result.rps, 1),
            "p50_ms": result.pct_ms(50), "p95_ms": result.pct_ms(95), "p99_ms": result.pct_ms(99),
            "max_ms": result.pct_ms(100), "statuses": result.statuses, "errors": result.errors,
            "client_cpu_s": round(result.client_cpu, 3), "other_cpu_s": round(result.other_cpu, 3),
            "steal_s": round(result.steal, 3),
            "server_cpu_s": None if result.server_cpu is None else round(result.server_cpu, 3)}


def _post_json(port: int, path: str, body: bytes, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{HOST}:{port}{path}", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with _DIRECT.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def spot_check(port: int, token: str, customer_id: str, feature_body: bytes) -> dict:
    _, precomputed = _post_json(port, "/v1/predict", json.dumps({"customer_id": customer_id}).encode(), token)
    status, on_the_fly = _post_json(port, "/v1/predict/features", feature_body, token)
    keys = ("predicted_spend", "churn_probability", "risk_segment")
    a = {k: precomputed.get(k) for k in keys}
    b = {k: on_the_fly.get(k) for k in keys}
    equal = status == 200 and all(
        (math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12) if isinstance(a[k], float) else a[k] == b[k])
        for k in keys)
    return {"customer_id": customer_id, "precomputed": a, "on_the_fly": b, "status": status, "equal": equal}


if __name__ == "__main__":
    sys.exit(main())
