"""The prediction API, end to end against REAL uvicorn servers on 127.0.0.1.

Serving files are built directly (no pipeline run): a synthetic feature snapshot with every FEATURES
column, tiny CatBoost models saved with `model_store.save_version` and promoted with `write_pointer`.
One module server ("served") runs on a data directory whose warehouse holds the same snapshot as
`features.customer_features`, scored by the real `customer_predictions` asset and exported by the real
`online_features` asset. The hot-reload, no-model and internal-error tests each get a server of their own
on a data directory without any warehouse (`fleet`, launched together so that the start-ups overlap).
Package bugs found are xfail(strict=True) tests whose reason names file and cause.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest
from catboost import CatBoostClassifier, CatBoostRegressor, Pool
from dagster import DagsterInstance, materialize

from mlsys_tests.test_feature_parity import feature_frame
from mlsys_assets.api.schemas import FeaturePayload
from mlsys_assets.api.state import ServingState, StateHolder
from mlsys_assets.features.derived import season_features
from mlsys_assets.features.snapshot import CATEGORICAL_FEATURES, FEATURES
from mlsys_assets.ml.model_store import ModelVersion, read_pointer, save_version, write_pointer
from mlsys_assets.ml.scoring import ProductionModels, model_frame
from mlsys_assets.predictions.assets import customer_predictions, online_features
from mlsys_assets.resources import ForecastSettings, LandingZone, Warehouse
from mlsys_tests.servers import Service, free_port, spawn, wait_until_ready

AS_OF = dt.date(2024, 6, 29)
TRAINING_DAYS = (dt.date(2024, 1, 13), dt.date(2024, 3, 30), dt.date(2024, 5, 4), dt.date(2024, 8, 17), dt.date(2024, 11, 2))
CUSTOMERS = 300
HORIZON_DAYS = 90
TOKEN = "api-test-token-5f0c8d1e"
BATCH_LIMIT = 5
MAX_BODY_BYTES = 16_384
SERVER_START_TIMEOUT = 90.0
LEAK_MARKERS = ("Traceback", 'File "', "site-packages")
PAYLOAD_FIELDS = [name for name in FeaturePayload.model_fields if name != "as_of"]


# --- synthetic snapshot and models ---------------------------------------------------------------------


def synthetic_snapshot(as_of: dt.date, customers: int = CUSTOMERS, seed: int = 7) -> pd.DataFrame:
    """One row per customer with every FEATURES column, NULL exactly where snapshot.sql leaves NULLs."""
    rng = np.random.default_rng(seed)
    n = customers
    buyer = rng.random(n) > 0.15
    signup = rng.integers(10, 900, n)
    tenure = np.where(buyer, (rng.random(n) * (signup + 1)).astype(int), 0)
    recency = np.where(buyer, (rng.random(n) * (tenure + 1)).astype(int), 0)
    purchase_days = np.where(buyer, 1 + rng.poisson(3, n), 0)
    tx_lifetime = purchase_days + np.where(buyer, rng.poisson(1, n), 0)
    qty_lifetime = tx_lifetime + np.where(buyer, rng.poisson(2, n), 0)
    spend_lifetime = np.round(tx_lifetime * rng.gamma(2.0, 30.0, n), 2)
    frame = pd.DataFrame({
        "as_of": pd.Timestamp(as_of),
        "customer_id": [f"C{i:07d}" for i in range(n)],
        "recency_days": pd.array(np.where(buyer, recency, 0), dtype="Int32"),
        "tenure_days": pd.array(np.where(buyer, tenure, 0), dtype="Int32"),
        "days_since_signup": signup.astype("int32"),
        "purchase_days": purchase_days.astype("int64"),
        "tx_lifetime": tx_lifetime.astype("int64"),
        "spend_lifetime": spend_lifetime,
        "qty_lifetime": qty_lifetime.astype("int64"),
    })
    frame.loc[~buyer, ["recency_days", "tenure_days"]] = pd.NA
    for days in (30, 90, 180, 365):
        active = buyer & (recency < days)
        share = np.where(active, np.clip(days / np.maximum(tenure, 1), 0, 1), 0.0)
        tx = np.where(active, np.maximum(1, np.round(tx_lifetime * share)), 0).astype("int64")
        frame[f"tx_{days}"] = tx
        frame[f"spend_{days}"] = np.round(np.where(tx_lifetime > 0, spend_lifetime * tx / np.maximum(tx_lifetime, 1), 0.0), 2)
        frame[f"qty_{days}"] = np.where(tx_lifetime > 0, np.round(qty_lifetime * tx / np.maximum(tx_lifetime, 1)), 0).astype("int64")
    # snapshot.sql: act.spend_90 - coalesce(act.spend_prev_90, 0): NULL without a purchase in the last 90 days.
    previous = frame["spend_180"] - frame["spend_90"]
    frame["spend_trend_90"] = np.where(frame["tx_90"] > 0, frame["spend_90"] - previous, np.nan)
    gap_mean = np.where(purchase_days >= 2, tenure / np.maximum(purchase_days - 1, 1), np.nan)
    frame["gap_mean_days"] = gap_mean
    frame["gap_std_days"] = np.where(purchase_days >= 3, gap_mean * rng.uniform(0.2, 1.0, n), np.nan)
    frame["last_gap_days"] = np.where(purchase_days >= 2, np.round(gap_mean * rng.uniform(0.2, 2.0, n)), np.nan)
    frame["avg_basket"] = np.where(buyer, spend_lifetime / np.maximum(tx_lifetime, 1), np.nan)
    frame["avg_items"] = np.where(buyer, qty_lifetime / np.maximum(tx_lifetime, 1), np.nan)
    frame["max_amount"] = np.where(buyer, np.round(frame["avg_basket"] * rng.uniform(1.0, 2.0, n), 2), np.nan)
    frame = frame.assign(**season_features(as_of))
    expected = rng.uniform(0.0, 3.0, n)
    frame["btyd_expected_purchases"] = np.where(buyer, expected, np.nan)
    frame["btyd_expected_spend"] = np.where(buyer, expected * frame["avg_basket"], np.nan)
    frame["btyd_p_alive"] = np.where(buyer, rng.uniform(0.0, 1.0, n), np.nan)
    frame["btyd_p_no_purchase"] = np.where(buyer, rng.uniform(0.0, 1.0, n), np.nan)
    frame["country"] = rng.choice(["DE", "FR", "US", "GB", "unknown"], n)
    frame["acquisition_channel"] = rng.choice(["ads", "organic", "referral", "unknown"], n)
    assert set(FEATURES) <= set(frame.columns)
    return frame[["as_of", "customer_id", *FEATURES]]


def train_models(seed: int) -> tuple[CatBoostRegressor, CatBoostClassifier]:
    """Tiny models trained on snapshots of several days, with a seasonal label so that season matters."""
    rng = np.random.default_rng(seed)
    train = pd.concat([synthetic_snapshot(day, seed=100 + i) for i, day in enumerate(TRAINING_DAYS)], ignore_index=True)
    recency = train["recency_days"].astype(float)
    churned = (recency.isna() | (recency > 45)).to_numpy() ^ (rng.random(len(train)) < 0.1)
    churned = churned | ((train["season_sin"].to_numpy() < -0.5) & (rng.random(len(train)) < 0.5))
    spend = np.where(churned, 0.0, (train["spend_90"].to_numpy() + 20) * (1.6 + train["season_sin"].to_numpy())
                     * rng.uniform(0.5, 1.5, len(train)))
    matrix = model_frame(train, list(FEATURES), list(CATEGORICAL_FEATURES))
    cats = list(CATEGORICAL_FEATURES)
    params = {"iterations": 30, "depth": 4, "learning_rate": 0.3, "random_seed": seed, "verbose": False,
              "allow_writing_files": False, "thread_count": 2}
    ltv = CatBoostRegressor(loss_function="Tweedie:variance_power=1.2", **params)
    ltv.fit(Pool(matrix, spend, cat_features=cats))
    churn = CatBoostClassifier(loss_function="Logloss", **params)
    churn.fit(Pool(matrix, churned.astype(int), cat_features=cats))
    return ltv, churn


def card(model_name: str, **overrides) -> dict:
    metrics = {"ltv": {"gini": 0.61, "top_decile_capture": 0.42}, "churn": {"roc_auc": 0.83, "log_loss": 0.47}}
    return {
        "kind": "CatBoostRegressor" if model_name == "ltv" else "CatBoostClassifier",
        "features": list(FEATURES),
        "categorical_features": list(CATEGORICAL_FEATURES),
        "label_window_days": HORIZON_DAYS,
        "metrics": {"holdout": metrics[model_name]},
        "training_window": {"first_as_of": str(TRAINING_DAYS[0]), "last_as_of": str(TRAINING_DAYS[-2])},
        "holdout_as_of": str(TRAINING_DAYS[-1]),
        "trained_at": "2024-11-20T03:00:00+00:00",
        **overrides,
    }


def save_models(data_dir: Path, models: tuple, **card_overrides) -> dict[str, ModelVersion]:
    ltv, churn = models
    return {"ltv": save_version(data_dir / "models", "ltv", ltv, card("ltv", **card_overrides)),
            "churn": save_version(data_dir / "models", "churn", churn, card("churn", **card_overrides))}


def publish(data_dir: Path, versions: dict[str, ModelVersion], reason: str = "test promotion") -> dict[str, str]:
    write_pointer(data_dir / "serving", versions, reason)
    return pair(versions)


def pair(versions: dict[str, ModelVersion]) -> dict[str, str]:
    return {name: version.version for name, version in versions.items()}


def write_online_store(data_dir: Path, snapshot: pd.DataFrame) -> Path:
    """The online parquet as DuckDB's COPY writes it (as_of a DATE), renamed into place atomically."""
    serving = data_dir / "serving"
    serving.mkdir(parents=True, exist_ok=True)
    temporary = serving / ".online_features.parquet.tmp-test"
    snapshot.assign(as_of=snapshot["as_of"].dt.date).to_parquet(temporary, index=False)
    os.replace(temporary, serving / "online_features.parquet")
    return serving / "online_features.parquet"


def payload_of(row: pd.Series) -> dict:
    """A stored snapshot row as a /v1/predict/features body: NaN -> null, numpy scalars -> JSON numbers."""
    payload = {}
    for name in PAYLOAD_FIELDS:
        value = row[name]
        if pd.isna(value):
            payload[name] = None
        elif isinstance(value, (int, np.integer)):
            payload[name] = int(value)
        elif isinstance(value, (float, np.floating)):
            payload[name] = float(value)
        else:
            payload[name] = str(value)
    return payload


def score_in_process(models: ProductionModels, payload: dict, day: dt.date) -> tuple[float, float, str]:
    """The scoring function on the API's feature row (test_feature_parity.py: the snapshot's row, bit for bit)."""
    scored = models.score(feature_frame(FeaturePayload(**payload, as_of=day), day)).iloc[0]
    return float(scored["predicted_spend"]), float(scored["churn_probability"]), str(scored["risk_segment"])


# --- real uvicorn servers --------------------------------------------------------------------------------


@dataclass
class Server(Service):
    """A uvicorn process serving the API of `data_dir`, with the clients the test opened on it."""

    data_dir: Path = Path()
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=20.0)
        self.clients.append(client)
        return client

    def health(self) -> dict:
        response = httpx.get(f"{self.url}/v1/health", timeout=10.0)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        super().stop()


def launch_server(data_dir: Path, log_path: Path, **settings: str) -> Server:
    """Start uvicorn in its own session without waiting (start-ups overlap); `wait_ready` before use."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLSYS_")}
    env.update({"MLSYS_DATA_DIR": str(data_dir), "MLSYS_API_TOKEN": TOKEN, "MLSYS_API_RELOAD_SECONDS": "0.2",
                "PYTHONUNBUFFERED": "1", **settings})
    process = spawn([sys.executable, "-m", "uvicorn", "--factory", "mlsys_assets.api.app:app_from_env",
                     "--host", "127.0.0.1", "--port", str(port), "--no-access-log"], log_path, env)
    return Server(process, f"http://127.0.0.1:{port}", log_path, data_dir)


def wait_ready(server: Server) -> Server:
    return wait_until_ready(server, "/v1/health", SERVER_START_TIMEOUT, ready=lambda status: status == 200,
                            interval=0.05)


def start_server(data_dir: Path, log_path: Path, **settings: str) -> Server:
    return wait_ready(launch_server(data_dir, log_path, **settings))


def wait_for(condition, timeout: float = 15.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def assert_no_leak(response: httpx.Response) -> None:
    for marker in LEAK_MARKERS:
        assert marker not in response.text, f"{response.status_code} leaks {marker!r}: {response.text[:500]}"


# --- module fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def snapshot() -> pd.DataFrame:
    return synthetic_snapshot(AS_OF)


@pytest.fixture(scope="module")
def models_v1() -> tuple:
    return train_models(seed=1)


@pytest.fixture(scope="module")
def models_v2() -> tuple:
    return train_models(seed=2)


@dataclass
class Fleet:
    """The single-test servers, each on its own data directory, launched together so their start-ups overlap."""

    hot_reload: Server
    hot_reload_first: dict[str, str]
    no_model: Server
    card_broken: Server
    card_broken_versions: dict[str, str]
    import_probe: subprocess.Popen


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, snapshot: pd.DataFrame, models_v1: tuple) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("api_fleet")
    probe = ("import json, sys, mlsys_assets.api.app; "
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'mlsys_assets'))))")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLSYS_")}
    servers: list[Server] = []
    import_probe = subprocess.Popen([sys.executable, "-c", probe], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env, cwd=str(root))
    try:
        hot = root / "hot_reload" / "data"
        write_online_store(hot, snapshot)
        hot_first = publish(hot, save_models(hot, models_v1))
        bare = root / "no_model" / "data"
        bare.mkdir(parents=True)
        broken = root / "card_broken" / "data"
        write_online_store(broken, snapshot)
        broken_versions = publish(broken, save_models(broken, models_v1))
        for data_dir in (hot, bare, broken):
            servers.append(launch_server(data_dir, data_dir.parent / "uvicorn.log"))
        yield Fleet(servers[0], hot_first, servers[1], servers[2], broken_versions, import_probe)
    finally:
        for server in servers:
            server.stop()
        if import_probe.poll() is None:
            import_probe.kill()
        import_probe.communicate()


@dataclass
class Served:
    server: Server
    data_dir: Path
    versions: dict[str, str]
    models: ProductionModels
    snapshot: pd.DataFrame

    def row(self, customer_id: str) -> pd.Series:
        return self.snapshot.set_index("customer_id").loc[customer_id]


@pytest.fixture(scope="module")
def served(tmp_path_factory, snapshot: pd.DataFrame, models_v1: tuple, fleet: Fleet) -> Iterator[Served]:
    """The module server: batch predictions and the online store made by the real assets from one warehouse."""
    root = tmp_path_factory.mktemp("api_served")
    data_dir = root / "data"
    versions = publish(data_dir, save_models(data_dir, models_v1))
    warehouse = Warehouse(path=str(data_dir / "warehouse.duckdb"))
    with warehouse.connect() as con:
        con.register("_frame", snapshot)
        con.execute("CREATE TABLE features.customer_features AS SELECT * REPLACE (as_of::DATE AS as_of) FROM _frame")
        con.unregister("_frame")
    resources = {"warehouse": warehouse, "landing": LandingZone(data_dir=str(data_dir)), "forecast": ForecastSettings()}
    with DagsterInstance.ephemeral() as instance:
        assert materialize([customer_predictions], resources=resources, partition_key=AS_OF.isoformat(),
                           instance=instance).success
        assert materialize([online_features], resources=resources, instance=instance).success
    server = start_server(data_dir, root / "uvicorn.log", MLSYS_API_BATCH_LIMIT=str(BATCH_LIMIT),
                          MLSYS_API_MAX_BODY_BYTES=str(MAX_BODY_BYTES))
    try:
        yield Served(server, data_dir, versions, ProductionModels.load(data_dir / "serving"), snapshot)
    finally:
        server.stop()


@pytest.fixture
def api(served: Served) -> httpx.Client:
    return served.server.client()


def known_ids(snapshot: pd.DataFrame, count: int) -> list[str]:
    return snapshot["customer_id"].iloc[:count].tolist()


def with_trend(snapshot: pd.DataFrame) -> pd.Series:
    """A stored row with no NULL at all (in particular spend_trend_90 present)."""
    return snapshot[snapshot[PAYLOAD_FIELDS].notna().all(axis=1)].iloc[0]


# --- the API process ----------------------------------------------------------------------------------------


def test_api_module_imports_neither_dagster_nor_asset_modules(fleet: Fleet):
    """A fresh interpreter that imports the API module (the probe was launched by `fleet`) loads no Dagster."""
    stdout, stderr = fleet.import_probe.communicate(timeout=120)
    assert fleet.import_probe.returncode == 0, stderr
    modules = json.loads(stdout)
    assert [m for m in modules if m.split(".")[0] == "dagster"] == []
    assert "mlsys_assets.api.app" in modules
    forbidden = [m for m in modules if m.endswith(".assets") or m.split(".")[-1] in ("resources", "definitions", "jobs")]
    assert forbidden == []


def test_server_never_opens_the_warehouse(served: Served, api: httpx.Client):
    warehouse = served.data_dir / "warehouse.duckdb"
    assert warehouse.exists()
    customer = known_ids(served.snapshot, 1)[0]
    assert api.post("/v1/predict", json={"customer_id": customer}).status_code == 200
    opened = []
    for fd in Path(f"/proc/{served.server.process.pid}/fd").iterdir():
        try:
            opened.append(os.readlink(fd))
        except OSError:
            continue
    assert not [path for path in opened if "warehouse.duckdb" in path]
    # DuckDB locks its file per process: a read-write connection succeeds only if the API holds none.
    con = duckdb.connect(str(warehouse))
    try:
        assert con.execute("SELECT count(*) FROM predictions.customer_predictions").fetchone()[0] == CUSTOMERS
    finally:
        con.close()


def test_health_needs_no_token_and_describes_the_served_state(served: Served):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.get(f"{served.server.url}/v1/health", headers=headers, timeout=10)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert body["models"] == served.versions
        assert body["features_as_of"] == AS_OF.isoformat()
        assert body["customers"] == CUSTOMERS
        assert body["last_reload_error"] is None
        assert body["reloads"] == 1


# --- auth ---------------------------------------------------------------------------------------------------


def _route_requests(served: Served) -> list[tuple[str, str, dict | None]]:
    customer = known_ids(served.snapshot, 1)[0]
    return [
        ("POST", "/v1/predict", {"customer_id": customer}),
        ("POST", "/v1/predict/batch", {"customer_ids": [customer]}),
        ("POST", "/v1/predict/features", payload_of(with_trend(served.snapshot))),
        ("POST", "/v1/predict/features/batch", {"rows": [payload_of(with_trend(served.snapshot))]}),
        ("GET", "/v1/models", None),
    ]


@pytest.mark.parametrize("authorization", [
    None, "Bearer wrong-token", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", "Bearer", TOKEN,
    f"Bearer {TOKEN.upper()}",
], ids=["none", "wrong", "suffixed", "truncated", "basic-scheme", "empty", "no-scheme", "uppercased"])
def test_every_route_but_health_refuses_a_missing_or_wrong_token(served: Served, authorization: str | None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    with httpx.Client(base_url=served.server.url, headers=headers, timeout=10) as client:
        for method, path, body in _route_requests(served):
            response = client.request(method, path, json=body)
            assert response.status_code == 401, (path, response.text)
            assert response.headers.get("www-authenticate") == "Bearer", path
            assert response.json() == {"detail": "missing or wrong bearer token"}
            assert_no_leak(response)


def test_every_route_accepts_the_right_token(served: Served, api: httpx.Client):
    for method, path, body in _route_requests(served):
        response = api.request(method, path, json=body)
        assert response.status_code == 200, (path, response.text)


def test_an_unauthenticated_malformed_request_gets_401_not_a_schema_error(served: Served):
    with httpx.Client(base_url=served.server.url, timeout=10) as client:
        response = client.post("/v1/predict/features", json={"tx_30": "many", "favourite_colour": "blue"})
    assert response.status_code == 401
    assert response.json() == {"detail": "missing or wrong bearer token"}


# --- /v1/predict, /v1/predict/batch, /v1/models -------------------------------------------------------------------


def test_predict_a_known_customer(served: Served, api: httpx.Client):
    pointer = read_pointer(served.data_dir / "serving")
    customer = known_ids(served.snapshot, 3)[2]
    response = api.post("/v1/predict", json={"customer_id": customer})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"customer_id", "predicted_spend", "churn_probability", "risk_segment", "horizon_days",
                         "features_as_of", "model_versions"}
    assert body["customer_id"] == customer
    assert body["model_versions"] == {name: entry["version"] for name, entry in pointer["models"].items()}
    assert body["horizon_days"] == HORIZON_DAYS
    assert body["features_as_of"] == AS_OF.isoformat()
    spend, churn, segment = score_in_process(served.models, payload_of(served.row(customer)), AS_OF)
    assert abs(body["predicted_spend"] - spend) < 1e-9
    assert abs(body["churn_probability"] - churn) < 1e-9
    assert body["risk_segment"] == segment
    assert body["risk_segment"] == ("low" if churn < 0.3 else "medium" if churn < 0.6 else "high")


def test_predict_an_unknown_customer_is_404_naming_it(api: httpx.Client):
    response = api.post("/v1/predict", json={"customer_id": "C9999999"})
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert "'C9999999'" in detail and AS_OF.isoformat() in detail
    assert_no_leak(response)


@pytest.mark.parametrize("body, loc, kind", [
    ({"customer_id": ""}, ["body", "customer_id"], "string_too_short"),
    ({"customer_id": "C" * 129}, ["body", "customer_id"], "string_too_long"),
    ({"customer_id": 42}, ["body", "customer_id"], "string_type"),
    ({}, ["body", "customer_id"], "missing"),
    ({"customer_id": "C0000001", "verbose": True}, ["body", "verbose"], "extra_forbidden"),
])
def test_predict_rejects_a_bad_request(api: httpx.Client, body: dict, loc: list, kind: str):
    response = api.post("/v1/predict", json=body)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [(error["loc"], error["type"]) for error in errors] == [(loc, kind)]


def test_batch_up_to_the_limit_reports_unknown_ids_separately(served: Served, api: httpx.Client):
    first, second, third = known_ids(served.snapshot, 3)
    ids = [first, "NOPE-1", second, third, "NOPE-2"]
    assert len(ids) == BATCH_LIMIT
    response = api.post("/v1/predict/batch", json={"customer_ids": ids})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["unknown_customer_ids"] == ["NOPE-1", "NOPE-2"]
    assert [p["customer_id"] for p in body["predictions"]] == [first, second, third]
    for prediction in body["predictions"]:
        single = api.post("/v1/predict", json={"customer_id": prediction["customer_id"]}).json()
        assert prediction == single
        assert prediction["model_versions"] == served.versions


def test_batch_over_the_limit_is_413(served: Served, api: httpx.Client):
    ids = known_ids(served.snapshot, BATCH_LIMIT + 1)
    response = api.post("/v1/predict/batch", json={"customer_ids": ids})
    assert response.status_code == 413
    assert response.json()["detail"] == f"{BATCH_LIMIT + 1} customer ids: at most {BATCH_LIMIT} per request"


def test_batch_of_nothing_is_422(api: httpx.Client):
    response = api.post("/v1/predict/batch", json={"customer_ids": []})
    assert response.status_code == 422
    assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [(["body", "customer_ids"], "too_short")]


def test_models_describes_the_production_versions(served: Served, api: httpx.Client):
    response = api.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"ltv", "churn"}
    for name in ("ltv", "churn"):
        assert body[name]["version"] == served.versions[name]
        assert body[name]["trained_at"] == "2024-11-20T03:00:00+00:00"
        assert body[name]["training_window"] == f"{TRAINING_DAYS[0]} … {TRAINING_DAYS[-2]}"
        assert body[name]["holdout_as_of"] == str(TRAINING_DAYS[-1])
        assert body[name]["holdout_metrics"] == card(name)["metrics"]["holdout"]
        assert body[name]["features"] == list(FEATURES)
        assert body[name]["kind"] == "catboost"


# --- /v1/predict/features ----------------------------------------------------------------------------------------


def test_features_payload_scores_like_the_scoring_function(served: Served, api: httpx.Client):
    row = with_trend(served.snapshot)
    payload = payload_of(row)
    day = dt.date(2024, 12, 24)
    response = api.post("/v1/predict/features", json={**payload, "as_of": day.isoformat()})
    assert response.status_code == 200, response.text
    body = response.json()
    spend, churn, segment = score_in_process(served.models, payload, day)
    assert abs(body["predicted_spend"] - spend) < 1e-9
    assert abs(body["churn_probability"] - churn) < 1e-9
    assert body["risk_segment"] == segment
    assert body["customer_id"] is None
    assert body["model_versions"] == served.versions
    assert body["horizon_days"] == HORIZON_DAYS
    # The season of the as_of day must matter, or the comparison above could not catch a wrong season.
    other_spend, other_churn, _ = score_in_process(served.models, payload, AS_OF)
    assert (other_spend, other_churn) != (spend, churn)


def test_features_without_as_of_use_the_online_store_day(served: Served, api: httpx.Client):
    row = with_trend(served.snapshot)
    response = api.post("/v1/predict/features", json=payload_of(row))
    assert response.status_code == 200, response.text
    spend, churn, _ = score_in_process(served.models, payload_of(row), AS_OF)
    assert abs(response.json()["predicted_spend"] - spend) < 1e-9
    assert abs(response.json()["churn_probability"] - churn) < 1e-9


def test_a_stored_customers_features_answer_like_predict(served: Served, api: httpx.Client):
    """Posting what the online store holds for a customer (with NULL gaps) gives its /v1/predict answer."""
    stored = served.snapshot
    candidates = stored[(stored["purchase_days"] == 1) & stored["spend_trend_90"].notna()]
    row = candidates.iloc[0]
    payload = payload_of(row)
    assert payload["gap_mean_days"] is None and payload["gap_std_days"] is None
    by_features = api.post("/v1/predict/features", json=payload)
    by_id = api.post("/v1/predict", json={"customer_id": row["customer_id"]})
    assert by_features.status_code == by_id.status_code == 200, by_features.text
    for key in ("predicted_spend", "churn_probability"):
        assert abs(by_features.json()[key] - by_id.json()[key]) < 1e-9
    assert by_features.json()["risk_segment"] == by_id.json()["risk_segment"]


def test_a_stored_customer_without_recent_purchases_answers_like_predict(served: Served, api: httpx.Client):
    stored = served.snapshot
    row = stored[stored["spend_trend_90"].isna() & stored["recency_days"].notna()].iloc[0]
    by_id = api.post("/v1/predict", json={"customer_id": row["customer_id"]})
    by_features = api.post("/v1/predict/features", json=payload_of(row))
    assert by_id.status_code == 200
    assert by_features.status_code == 200, by_features.text
    assert abs(by_features.json()["predicted_spend"] - by_id.json()["predicted_spend"]) < 1e-9
    assert abs(by_features.json()["churn_probability"] - by_id.json()["churn_probability"]) < 1e-9


@pytest.mark.parametrize("change, field_name, kind", [
    ({"tx_30": "many"}, "tx_30", "int_parsing"),
    ({"tx_30": 2.5}, "tx_30", "int_from_float"),
    ({"spend_30": "12.5 EUR"}, "spend_30", "float_parsing"),
    ({"country": 5}, "country", "string_type"),
    ({"as_of": "2024-02-30"}, "as_of", None),
    ({"tx_30": -1}, "tx_30", "greater_than_equal"),
    ({"recency_days": -3}, "recency_days", "greater_than_equal"),
    ({"spend_90": -0.01}, "spend_90", "greater_than_equal"),
    ({"btyd_p_alive": 1.5}, "btyd_p_alive", "less_than_equal"),
    ({"btyd_p_no_purchase": -0.1}, "btyd_p_no_purchase", "greater_than_equal"),
    ({"spend_lifetime": 2e9}, "spend_lifetime", "less_than_equal"),
    ({"country": ""}, "country", "string_too_short"),
    ({"favourite_colour": "blue"}, "favourite_colour", "extra_forbidden"),
    ({"tx_30": None}, "tx_30", "int_type"),
], ids=lambda value: json.dumps(value) if isinstance(value, dict) else str(value))
def test_features_reject_a_bad_field_by_name(served: Served, api: httpx.Client, change: dict, field_name: str,
                                             kind: str | None):
    payload = {**payload_of(with_trend(served.snapshot)), **change}
    response = api.post("/v1/predict/features", json=payload)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert [error["loc"] for error in errors] == [["body", field_name]]
    if kind is not None:
        assert errors[0]["type"] == kind
    assert_no_leak(response)


def test_features_reject_a_missing_required_field_and_nan(served: Served, api: httpx.Client):
    payload = payload_of(with_trend(served.snapshot))
    del payload["tx_90"]
    response = api.post("/v1/predict/features", json=payload)
    assert response.status_code == 422
    assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [(["body", "tx_90"], "missing")]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_features_reject_a_non_finite_number_with_422(served: Served, api: httpx.Client, literal: str):
    text = json.dumps({**payload_of(with_trend(served.snapshot)), "spend_30": "__HERE__"})
    text = text.replace('"__HERE__"', literal)
    response = api.post("/v1/predict/features", content=text, headers={"Content-Type": "application/json"})
    assert_no_leak(response)
    assert response.status_code == 422, (literal, response.text)
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "spend_30"]]


# --- body size and error hygiene ---------------------------------------------------------------------------------


def _big_batch_body() -> bytes:
    # Just over the limit: a body much larger than what the server reads before answering 413 lets the
    # kernel reset the connection (unread data at close) and can swallow the 413 on the client side.
    ids = [f"C{i:07d}" for i in range(MAX_BODY_BYTES // 12 + 20)]
    body = json.dumps({"customer_ids": ids}).encode()
    assert MAX_BODY_BYTES < len(body) < MAX_BODY_BYTES + 1024
    return body


def test_a_body_over_the_limit_is_413(served: Served, api: httpx.Client):
    for path in ("/v1/predict/batch", "/v1/predict/features", "/v1/predict"):
        response = api.post(path, content=_big_batch_body(), headers={"Content-Type": "application/json"})
        assert response.status_code == 413, (path, response.text)
        assert response.json() == {"detail": "request body too large"}
    # A stranger gets 401 before any of the body is read (authentication comes first), not 413.
    with httpx.Client(base_url=served.server.url, timeout=10) as stranger:
        response = stranger.post("/v1/predict/batch", content=_big_batch_body(),
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    # The boundary: exactly the limit is read and answered, one byte more is refused.
    text = json.dumps(payload_of(with_trend(served.snapshot)))
    at_limit = (text + " " * (MAX_BODY_BYTES - len(text))).encode()
    assert len(at_limit) == MAX_BODY_BYTES
    response = api.post("/v1/predict/features", content=at_limit, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    response = api.post("/v1/predict/features", content=at_limit + b" ", headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_a_chunked_body_over_the_limit_is_413(api: httpx.Client):
    body = _big_batch_body()

    def chunks():
        for start in range(0, len(body), 1024):
            yield body[start:start + 1024]

    response = api.post("/v1/predict/batch", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413, response.text
    assert response.json() == {"detail": "request body too large"}


def _raw_request(server: Server, request: bytes) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
            if b"\r\n\r\n" in received:
                head, _, rest = received.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
                if length and len(rest) >= length[0]:
                    break
        return received


def test_no_error_response_carries_a_stack_trace(served: Served, api: httpx.Client):
    json_header = {"Content-Type": "application/json"}
    responses = [
        api.post("/v1/predict", content=b'{"customer_id": ', headers=json_header),
        api.post("/v1/predict", content=b'\xff\xfe{"customer_id": "\xff"}', headers=json_header),
        api.post("/v1/predict", content=b"[1, 2, 3]", headers=json_header),
        api.post("/v1/predict", content=b'{"customer_id": "C0000001"}', headers={"Content-Type": "text/plain"}),
        api.post("/v1/predict/batch", content=b"[" * 5000 + b"]" * 5000, headers=json_header),
        api.post("/v1/predict/features", content=b'{"tx_30": 123456789012345678901234567890}', headers=json_header),
        api.post("/v1/predict/features", json={**payload_of(with_trend(served.snapshot)), "as_of": "yesterday"}),
        api.post("/v1/predict/batch", json={"customer_ids": "C0000001"}),
        api.post("/v1/predict", json={"customer_id": "C9999999"}),
        api.post("/v1/predict/batch", json={"customer_ids": known_ids(served.snapshot, 9)}),
        api.post("/v1/predict/batch", content=_big_batch_body(), headers=json_header),
        api.get("/v1/predict"),
        api.post("/v1/nowhere", json={}),
        httpx.post(f"{served.server.url}/v1/predict", json={"customer_id": "C0000001"}),
    ]
    statuses = [response.status_code for response in responses]
    assert statuses == [422, 422, 422, 422, 400, 422, 422, 422, 404, 413, 413, 405, 404, 401]
    for response in responses:
        assert_no_leak(response)
    raw = [
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\nConnection: close\r\n\r\n",
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\nConnection: close\r\n\r\n",
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\n",
    ]
    for request in raw:
        answer = _raw_request(served.server, request)
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:300]
        for marker in LEAK_MARKERS:
            assert marker.encode() not in answer, answer[:500]


# --- consistency with batch predictions ---------------------------------------------------------------------------


def test_api_answers_equal_batch_predictions_for_every_customer(served: Served, api: httpx.Client):
    con = duckdb.connect(str(served.data_dir / "warehouse.duckdb"), read_only=True)
    try:
        batch = con.execute(
            "SELECT customer_id, predicted_spend, churn_probability, risk_segment, horizon_days, ltv_version, "
            "churn_version FROM predictions.customer_predictions WHERE as_of = ? ORDER BY customer_id", [AS_OF]
        ).fetchall()
    finally:
        con.close()
    assert len(batch) == CUSTOMERS
    assert {(row[5], row[6]) for row in batch} == {(served.versions["ltv"], served.versions["churn"])}
    by_batch_route = {}
    ids = [row[0] for row in batch]
    for start in range(0, len(ids), BATCH_LIMIT):
        response = api.post("/v1/predict/batch", json={"customer_ids": ids[start:start + BATCH_LIMIT]})
        assert response.status_code == 200
        assert response.json()["unknown_customer_ids"] == []
        by_batch_route.update({p["customer_id"]: p for p in response.json()["predictions"]})
    mismatches = []
    for customer_id, spend, churn, segment, horizon, ltv_version, churn_version in batch:
        response = api.post("/v1/predict", json={"customer_id": customer_id})
        assert response.status_code == 200, response.text
        for answer in (response.json(), by_batch_route[customer_id]):
            if not (abs(answer["predicted_spend"] - spend) < 1e-9 and abs(answer["churn_probability"] - churn) < 1e-9
                    and answer["risk_segment"] == segment and answer["horizon_days"] == horizon
                    and answer["features_as_of"] == AS_OF.isoformat()
                    and answer["model_versions"] == {"ltv": ltv_version, "churn": churn_version}):
                mismatches.append((customer_id, answer, (spend, churn, segment, horizon, ltv_version, churn_version)))
    assert mismatches == []


# --- hot reload ---------------------------------------------------------------------------------------------------


@dataclass
class Observed:
    started: float
    status: int | None
    versions: dict | None
    error: str | None = None


def _stream(url: str, customer: str, payload: dict, stop: threading.Event, out: list[Observed], limit: int = 4000):
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20) as client:
        for i in range(limit):
            if stop.is_set():
                return
            started = time.monotonic()
            try:
                if i % 2:
                    response = client.post("/v1/predict/features", json=payload)
                else:
                    response = client.post("/v1/predict", json={"customer_id": customer})
                body = response.json()
                out.append(Observed(started, response.status_code, body.get("model_versions"),
                                    None if response.status_code == 200 else response.text))
            except Exception as exc:  # noqa: BLE001 - every failure is recorded and asserted on
                out.append(Observed(started, None, None, f"{type(exc).__name__}: {exc}"))
            time.sleep(0.003)


def _broken_version(data_dir: Path, name: str, good: ModelVersion) -> ModelVersion:
    """A version folder whose model.cbm is garbage (its card is fine)."""
    version = f"{name}-20991231T235959-deadbeef"
    folder = data_dir / "models" / name / version
    folder.mkdir(parents=True)
    (folder / "card.json").write_text(json.dumps({**good.card(), "version": version}))
    (folder / "model.cbm").write_bytes(b"this is not a CatBoost model \x00\x01\x02" * 20)
    return ModelVersion(name, version, folder)


def test_hot_reload_swaps_models_without_failing_requests_and_refuses_broken_ones(
    fleet: Fleet, snapshot: pd.DataFrame, models_v2: tuple
):
    server = wait_ready(fleet.hot_reload)
    data_dir, first = server.data_dir, fleet.hot_reload_first
    second_versions = save_models(data_dir, models_v2)
    third_versions = save_models(data_dir, train_models(seed=3), trained_at="2024-11-27T03:00:00+00:00")
    second, third = pair(second_versions), pair(third_versions)
    assert len({first["ltv"], second["ltv"], third["ltv"]}) == 3
    row = with_trend(snapshot)
    stop, observed = threading.Event(), []
    streamer = threading.Thread(target=_stream, args=(server.url, row["customer_id"], payload_of(row), stop, observed))
    try:
        assert server.health()["models"] == first
        streamer.start()
        time.sleep(0.6)
        publish(data_dir, second_versions, "promotion")
        wait_for(lambda: server.health()["models"] == second, what="the second versions")
        swapped_at = time.monotonic()
        time.sleep(0.4)

        broken = {"ltv": _broken_version(data_dir, "ltv", second_versions["ltv"]), "churn": second_versions["churn"]}
        publish(data_dir, broken, "a broken promotion")
        error = wait_for(lambda: server.health()["last_reload_error"], what="a reload error")
        assert "CatBoostError" in error
        time.sleep(0.4)

        lacking = save_models(data_dir, models_v2, features=[*FEATURES, "favourite_colour"])
        publish(data_dir, lacking, "a model needing a feature the online store lacks")
        error = wait_for(lambda: "favourite_colour" in (server.health()["last_reload_error"] or "")
                         and server.health()["last_reload_error"], what="the missing-feature error")
        assert error == "ValueError: the online store lacks features the production models need: ['favourite_colour']"
        time.sleep(0.4)
        stop.set()
        streamer.join(timeout=30)
        assert not streamer.is_alive()

        failures = [o for o in observed if o.status != 200]
        assert failures == []
        assert len(observed) > 50
        sequence = [o.versions for o in observed]
        assert all(v in (first, second) for v in sequence), "a response mixed versions or served a refused one"
        first_new = sequence.index(second)
        assert first_new > 0 and all(v == second for v in sequence[first_new:])
        after_swap = [o for o in observed if o.started > swapped_at]
        assert len(after_swap) > 20 and all(o.versions == second for o in after_swap)

        health = server.health()
        assert health["status"] == "ok" and health["models"] == second
        assert health["reloads"] == 2
        # A refused pointer is tried once, not every reload interval.
        assert server.log().count("refused to load the new serving state") == 2

        publish(data_dir, third_versions, "a good promotion after the broken ones")
        wait_for(lambda: server.health()["models"] == third, what="the third versions")
        health = server.health()
        assert health["last_reload_error"] is None and health["reloads"] == 3
        response = server.client().post("/v1/predict", json={"customer_id": row["customer_id"]})
        assert response.status_code == 200 and response.json()["model_versions"] == third
    finally:
        stop.set()
        if streamer.is_alive():
            streamer.join(timeout=30)


def test_a_reload_never_mixes_the_versions_of_two_pointers(
    tmp_path: Path, snapshot: pd.DataFrame, models_v1: tuple, models_v2: tuple, monkeypatch: pytest.MonkeyPatch
):
    data_dir = tmp_path / "data"
    write_online_store(data_dir, snapshot)
    first = publish(data_dir, save_models(data_dir, models_v1))
    second_versions = save_models(data_dir, models_v2)
    second = pair(second_versions)
    original_load, promoted = ModelVersion.load, []

    def load_then_promote(self: ModelVersion):
        model = original_load(self)
        if self.model == "ltv" and not promoted:
            promoted.append(publish(data_dir, second_versions, "promotion while the API loads"))
        return model

    monkeypatch.setattr(ModelVersion, "load", load_then_promote)
    holder = StateHolder(data_dir / "serving")
    assert holder.try_reload()
    assert promoted
    assert holder.state.versions in (first, second)


# --- no production model yet, no warehouse ------------------------------------------------------------------------


def test_no_model_yet_is_503_until_the_pointer_appears_then_serves_without_restart(
    fleet: Fleet, snapshot: pd.DataFrame, models_v1: tuple
):
    server = wait_ready(fleet.no_model)
    data_dir = server.data_dir
    assert list(data_dir.iterdir()) == []
    health = server.health()
    assert health["status"] == "not_ready" and health["models"] is None and health["customers"] == 0
    assert health["last_reload_error"].startswith("NoProductionModelError: no production model yet")
    api = server.client()
    customer = known_ids(snapshot, 1)[0]
    requests = [("POST", "/v1/predict", {"customer_id": customer}),
                ("POST", "/v1/predict/batch", {"customer_ids": [customer]}),
                ("POST", "/v1/predict/features", payload_of(with_trend(snapshot))),
                ("POST", "/v1/predict/features/batch", {"rows": [payload_of(with_trend(snapshot))]}),
                ("GET", "/v1/models", None)]
    for method, path, body in requests:
        response = api.request(method, path, json=body)
        assert response.status_code == 503, (path, response.text)
        assert response.json()["detail"].startswith("no model is being served: NoProductionModelError: no production")
        assert_no_leak(response)
    # Authentication still comes first.
    assert httpx.post(f"{server.url}/v1/predict", json={"customer_id": customer}, timeout=10).status_code == 401

    write_online_store(data_dir, snapshot)
    time.sleep(0.6)  # three reload intervals: the store alone does not make the API ready
    assert server.health()["status"] == "not_ready"
    assert api.post("/v1/predict", json={"customer_id": customer}).status_code == 503

    versions = publish(data_dir, save_models(data_dir, models_v1), "first promotion")
    wait_for(lambda: server.health()["status"] == "ok", what="the API to start serving")
    health = server.health()
    assert health["models"] == versions and health["customers"] == CUSTOMERS
    assert health["last_reload_error"] is None and health["reloads"] == 1
    response = api.post("/v1/predict", json={"customer_id": customer})
    assert response.status_code == 200, response.text
    assert response.json()["model_versions"] == versions
    models = ProductionModels.load(data_dir / "serving")
    spend, churn, segment = score_in_process(models, payload_of(snapshot.iloc[0]), AS_OF)
    assert abs(response.json()["predicted_spend"] - spend) < 1e-9
    assert abs(response.json()["churn_probability"] - churn) < 1e-9
    assert response.json()["risk_segment"] == segment
    assert not (data_dir / "warehouse.duckdb").exists()


# --- an internal error ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def card_broken_server(fleet: Fleet) -> Server:
    """A server whose serving ltv card turned unreadable after load: GET /v1/models raises inside the app."""
    server = wait_ready(fleet.card_broken)
    versions = fleet.card_broken_versions
    wait_for(lambda: server.health()["models"] == versions, what="the card_broken server to serve")
    (server.data_dir / "models" / "ltv" / versions["ltv"] / "card.json").write_text("{not json")
    return server


def test_an_internal_error_answers_a_generic_500_and_logs_the_traceback(card_broken_server: Server,
                                                                        snapshot: pd.DataFrame):
    with card_broken_server.client() as api:
        response = api.get("/v1/models")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error; see the server log"}
    assert_no_leak(response)
    log = card_broken_server.log()
    assert "Traceback" in log and "JSONDecodeError" in log
    with card_broken_server.client() as api:
        assert api.post("/v1/predict", json={"customer_id": known_ids(snapshot, 1)[0]}).status_code == 200


def _read_response(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {received!r}")
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return int(lines[0].split(" ")[1]), headers, body


def test_a_500_keeps_the_connection_usable_or_announces_its_close(card_broken_server: Server):
    host, port = card_broken_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(f"GET /v1/models HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        status, headers, _ = _read_response(connection)
        assert status == 500
        if headers.get("connection", "").lower() == "close":
            return  # announced: a client will not reuse the connection
        time.sleep(0.3)
        try:
            connection.sendall(f"GET /v1/health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            status, _, _ = _read_response(connection)
        except OSError as exc:
            pytest.fail(f"the server dropped the keep-alive connection after the 500 without announcing it: {exc!r}")
        assert status == 200


def publish_btyd(data_dir: Path, label_window_days: int | None = HORIZON_DAYS) -> None:
    """BG/NBD + Gamma-Gamma serves both targets: versions that are a card and no model file."""
    versions = {name: save_version(data_dir / "models", name, None,
                                   {"kind": "btyd", "features": [column], "label_window_days": label_window_days})
                for name, column in (("ltv", "btyd_expected_spend"), ("churn", "btyd_p_no_purchase"))}
    publish(data_dir, versions)


def test_where_btyd_serves_the_api_answers_its_forecasts_and_says_so(tmp_path, snapshot: pd.DataFrame):
    data_dir = tmp_path / "data"
    write_online_store(data_dir, snapshot)
    publish_btyd(data_dir)
    holder = StateHolder(data_dir / "serving")

    assert holder.try_reload(), holder.last_error

    state = holder.state
    assert all("-btyd-" in v for v in state.versions.values())
    spend, churn, _ = zip(*(state.predictions[c] for c in snapshot["customer_id"]))
    np.testing.assert_allclose(spend, snapshot["btyd_expected_spend"].fillna(0.0))
    np.testing.assert_allclose(churn, snapshot["btyd_p_no_purchase"].fillna(1.0))


def test_the_answered_horizon_is_the_served_models_else_the_pipelines(tmp_path, snapshot: pd.DataFrame, monkeypatch):
    """`horizon_days` is what the served model was trained for (its card's label_window_days); a card that does
    not say gets the horizon daily predictions use (MLSYS_HORIZON_DAYS), never a constant of the API."""
    monkeypatch.setenv("MLSYS_HORIZON_DAYS", "45")
    data_dir = tmp_path / "data"
    write_online_store(data_dir, snapshot)
    for stated, answered in ((HORIZON_DAYS, HORIZON_DAYS), (None, 45)):
        publish_btyd(data_dir, label_window_days=stated)
        assert ServingState.load(data_dir / "serving").horizon_days == answered
