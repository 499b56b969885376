"""Posted features are scored like the pipeline scores the same customers, without pandas on the request.

A small simulated shop goes through the real pipeline (features, retraining with its gate, the
`customer_predictions` and `online_features` assets); every customer's online-store row is then posted to
/v1/predict/features (one request each) and to /v1/predict/features/batch (batches up to the limit), and
each answer must equal the batch path's row in `predictions.customer_predictions` to 1e-9. That for what
the gate chose and for CatBoost and BG/NBD + Gamma-Gamma serving both targets (forced pointers), the batch
path re-run for each. The app runs in process (Starlette's TestClient: every route, middleware and
dependency as uvicorn runs them), so the test can also watch what a request builds and calls.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from catboost import CatBoost
from dagster import DagsterInstance
from fastapi.testclient import TestClient

from mlsys_assets.api.app import ApiSettings, create_app
from mlsys_assets.api.schemas import FeaturePayload
from mlsys_assets.features.assets import customer_features
from mlsys_assets.ml.model_store import ModelVersion, read_pointer, save_version, write_pointer
from mlsys_assets.ml.registry import btyd_card
from mlsys_assets.predictions.assets import customer_predictions, online_features
from mlsys_tests.conftest import SHOP_CONFIG, SHOP_HORIZON_DAYS, Shop

DAY = SHOP_CONFIG.end
TOKEN = "features-scoring-token"
BATCH_LIMIT = 250
PAYLOAD_FIELDS = [name for name in FeaturePayload.model_fields if name != "as_of"]
TOLERANCE = 1e-9


def payload_of(row: dict) -> dict:
    """An online-store row as the JSON body a client posts for it: NaN -> null, numpy scalars -> JSON values."""
    values = {}
    for name in PAYLOAD_FIELDS:
        value = row[name]
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            values[name] = None
        else:
            values[name] = value.item() if hasattr(value, "item") else value
    return values


@pytest.fixture(scope="module")
def shop(tmp_path_factory, shop_factory) -> Iterator[Shop]:
    """The shop trained through the gate, its day scored and exported to the online store."""
    with DagsterInstance.ephemeral() as instance:
        shop = shop_factory(tmp_path_factory.mktemp("features_scoring"), instance)
        shop.materialize([customer_features], partition_key=DAY.isoformat())
        shop.retrain()
        shop.materialize([online_features])
        yield shop


def _versions(shop: Shop) -> dict[tuple[str, str], ModelVersion]:
    """(model, kind) -> a servable version of that kind: the gate's candidates and BG/NBD versions."""
    found = {}
    for model, version, path in shop.query("SELECT model, version, path FROM ml.model_registry "
                                           "WHERE state <> 'evaluated' ORDER BY created_at"):
        folder = Path(path) if Path(path).is_absolute() else shop.data_dir / path
        kind = "btyd" if json.loads((folder / "card.json").read_text()).get("kind") == "btyd" else "catboost"
        found[(model, kind)] = ModelVersion(model, version, folder)
    for model in ("ltv", "churn"):  # the gate may never have needed a fallback for a target
        if (model, "btyd") not in found:
            found[(model, "btyd")] = save_version(shop.layout.models, model, None, btyd_card(model, SHOP_HORIZON_DAYS))
    return found


SERVING = {
    "as-the-gate-decided": None,
    "catboost-serves-both": {"ltv": "catboost", "churn": "catboost"},
    "btyd-serves-both": {"ltv": "btyd", "churn": "btyd"},
}


def _serve(shop: Shop, serving: str) -> dict[str, str]:
    """Point production at `serving`'s kinds, score DAY with the batch path; returns the served kinds."""
    versions = _versions(shop)
    kinds = SERVING[serving]
    if kinds is not None:
        write_pointer(shop.layout.serving, {m: versions[(m, k)] for m, k in kinds.items()}, f"test: {serving}")
    shop.materialize([customer_predictions], partition_key=DAY.isoformat())
    pointer = read_pointer(shop.layout.serving)["models"]
    by_version = {v.version: kind for (_m, kind), v in versions.items()}
    return {m: by_version[entry["version"]] for m, entry in pointer.items()}


def _app(shop: Shop, fast_path: bool = True) -> TestClient:
    settings = ApiSettings(serving_root=shop.layout.serving, token=TOKEN, batch_limit=BATCH_LIMIT, reload_seconds=3600,
                           features_fast_path=fast_path)
    return TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"},
                      raise_server_exceptions=False)


def _store(shop: Shop) -> list[dict]:
    return pd.read_parquet(shop.layout.online_store).to_dict("records")


def _batch_predictions(shop: Shop) -> dict[str, tuple[float, float, str]]:
    con = duckdb.connect(str(shop.layout.warehouse), read_only=True)
    try:
        rows = con.execute("SELECT customer_id, predicted_spend, churn_probability, risk_segment "
                           "FROM predictions.customer_predictions WHERE as_of = ?", [DAY]).fetchall()
    finally:
        con.close()
    return {customer: (spend, churn, segment) for customer, spend, churn, segment in rows}


def _differs(answer: dict, expected: tuple[float, float, str]) -> bool:
    spend, churn, segment = expected
    return not (abs(answer["predicted_spend"] - spend) <= TOLERANCE
                and abs(answer["churn_probability"] - churn) <= TOLERANCE and answer["risk_segment"] == segment)


@pytest.mark.parametrize("serving", list(SERVING))
def test_every_customer_posted_as_features_gets_the_batch_paths_answer(shop: Shop, serving: str):
    served = _serve(shop, serving)
    if SERVING[serving]:
        assert served == SERVING[serving]
    expected, store = _batch_predictions(shop), _store(shop)
    assert len(store) == len(expected) > 300
    assert {row["as_of"] for row in store} == {DAY}
    mismatches = []
    with _app(shop) as api:
        assert api.get("/v1/health").json()["status"] == "ok"
        for row in store:  # one request per customer; without as_of the online store's day is the row's day
            response = api.post("/v1/predict/features", json=payload_of(row))
            assert response.status_code == 200, response.text
            if _differs(response.json(), expected[row["customer_id"]]):
                mismatches.append(("single", row["customer_id"], response.json(), expected[row["customer_id"]]))
        for start in range(0, len(store), BATCH_LIMIT):
            chunk = store[start:start + BATCH_LIMIT]
            body = {"rows": [{**payload_of(row), "as_of": DAY.isoformat()} for row in chunk]}
            response = api.post("/v1/predict/features/batch", json=body)
            assert response.status_code == 200, response.text
            answers = response.json()["predictions"]
            assert len(answers) == len(chunk)
            for row, answer in zip(chunk, answers):
                assert answer["model_versions"] == api.get("/v1/health").json()["models"]
                if _differs(answer, expected[row["customer_id"]]):
                    mismatches.append(("batch", row["customer_id"], answer, expected[row["customer_id"]]))
    assert mismatches == [], f"{len(mismatches)} answers differ from the batch path ({served}): {mismatches[:3]}"


def test_without_the_fast_path_the_route_answers_every_customer_alike(shop: Shop):
    """FastAPI's own route (what answers when FeaturesFastPath hands a request on) gives the same answers, byte
    for byte, and the same refusals."""
    _serve(shop, "catboost-serves-both")
    expected, store = _batch_predictions(shop), _store(shop)
    refused = [b'{"tx_30": 1}', b"[" * 5000 + b"]" * 5000, b"\xff", b"{"]
    with _app(shop, fast_path=False) as route, _app(shop) as fast:
        answers = [(row["customer_id"], route.post("/v1/predict/features", json=payload_of(row)),
                    fast.post("/v1/predict/features", json=payload_of(row))) for row in store]
        refusals = [(route.post("/v1/predict/features", content=body, headers={"Content-Type": "application/json"}),
                     fast.post("/v1/predict/features", content=body, headers={"Content-Type": "application/json"}))
                    for body in refused]
    assert {response.status_code for _, response, _ in answers} == {200}
    assert [c for c, r, _ in answers if _differs(r.json(), expected[c])] == []
    assert [c for c, r, f in answers if (r.content, r.headers["content-type"]) != (f.content, f.headers["content-type"])] == []
    assert [(r.status_code, r.content) for r, _ in refusals] == [(f.status_code, f.content) for _, f in refusals]
    assert [r.status_code for r, _ in refusals] == [422, 400, 400, 422]


class _Forbidden(AssertionError):
    pass


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi-route"])
def test_no_pandas_object_is_built_while_a_features_request_is_answered(shop: Shop, monkeypatch, fast_path: bool):
    _serve(shop, "catboost-serves-both")
    store = _store(shop)
    made: list[str] = []

    def forbid(name: str):
        def refuse(*args, **kwargs):
            made.append(name)
            raise _Forbidden(f"{name} built on the request path")
        return refuse

    with _app(shop, fast_path) as api:
        assert api.get("/v1/health").json()["status"] == "ok"  # the state (pandas) loads before the patch
        with monkeypatch.context() as patch:
            for cls in (pd.DataFrame, pd.Series):
                patch.setattr(cls, "__init__", forbid(f"pandas.{cls.__name__}"))
                patch.setattr(cls, "_from_mgr", classmethod(forbid(f"pandas.{cls.__name__}._from_mgr")))
            responses = [api.post("/v1/predict/features", json=payload_of(row)) for row in store[:20]]
    assert made == []
    assert [r.status_code for r in responses] == [200] * len(responses), responses[0].text


def test_a_feature_batch_is_one_catboost_call_per_model_and_bounded_by_the_batch_limit(shop: Shop, monkeypatch):
    served = _serve(shop, "catboost-serves-both")
    assert served == {"ltv": "catboost", "churn": "catboost"}
    store = _store(shop)
    calls: list[int] = []
    original = CatBoost._predict  # what the regressor's and the classifier's predict both call

    def counted(self, data, *args, **kwargs):
        calls.append(1)
        return original(self, data, *args, **kwargs)

    with _app(shop) as api:
        assert api.get("/v1/health").json()["status"] == "ok"
        monkeypatch.setattr(CatBoost, "_predict", counted)
        body = {"rows": [payload_of(row) for row in store[:BATCH_LIMIT]]}
        response = api.post("/v1/predict/features/batch", json=body)
        assert response.status_code == 200, response.text
        assert len(calls) == 2  # ltv and churn: one call each for the whole batch
        over = api.post("/v1/predict/features/batch", json={"rows": body["rows"] + body["rows"][:1]})
        assert over.status_code == 413
        assert over.json() == {"detail": f"{BATCH_LIMIT + 1} rows: at most {BATCH_LIMIT} per request"}
        assert api.post("/v1/predict/features/batch", json={"rows": []}).status_code == 422
        spec = api.get("/openapi.json").json()
    route = spec["paths"]["/v1/predict/features/batch"]["post"]
    assert {"200", "401", "413", "422", "503"} <= set(route["responses"])
    rows = spec["components"]["schemas"]["FeatureBatchRequest"]["properties"]["rows"]
    assert rows["maxItems"] == BATCH_LIMIT and rows["items"] == {"$ref": "#/components/schemas/FeaturePayload"}


def test_a_batch_names_each_bad_row_by_its_index(shop: Shop):
    row = payload_of(_store(shop)[0])
    far = (DAY + dt.timedelta(days=6 * 366)).isoformat()
    with _app(shop) as api:
        response = api.post("/v1/predict/features/batch",
                            json={"rows": [row, {**row, "tx_30": -1}, {**row, "as_of": far}]})
        assert response.status_code == 422
        assert [issue["loc"] for issue in response.json()["detail"]] == [["body", "rows", 1, "tx_30"]]
        response = api.post("/v1/predict/features/batch", json={"rows": [row, {**row, "as_of": far}]})
        assert response.status_code == 422
        assert [(i["loc"], i["type"]) for i in response.json()["detail"]] == [(["body", "rows", 1, "as_of"],
                                                                                "date_out_of_range")]


def test_concurrent_feature_requests_share_catboost_calls_and_keep_their_answers(shop: Shop, monkeypatch):
    """Requests handled in the same round of the event loop are scored together (RowBatcher): fewer CatBoost
    calls than requests, and each request still gets its own customer's answer."""
    import asyncio

    import httpx

    _serve(shop, "catboost-serves-both")
    expected, store = _batch_predictions(shop), _store(shop)[:64]
    app = _app(shop).app
    inner = app
    while not hasattr(getattr(inner, "state", None), "holder"):
        inner = inner.app
    assert inner.state.holder.try_reload()
    calls: list[int] = []
    original = CatBoost._predict

    def counted(self, data, *args, **kwargs):
        calls.append(1)
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(CatBoost, "_predict", counted)

    async def post_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            return await asyncio.gather(*(client.post("/v1/predict/features", json=payload_of(row)) for row in store))

    responses = asyncio.run(post_all())
    assert [r.status_code for r in responses] == [200] * len(store)
    assert [c for c, r in zip((row["customer_id"] for row in store), responses) if _differs(r.json(), expected[c])] == []
    assert 2 <= len(calls) < 2 * len(store) / 4, len(calls)  # two models, batches of several requests
