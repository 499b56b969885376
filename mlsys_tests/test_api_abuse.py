"""Hostile and absurd input against a REAL uvicorn server on 127.0.0.1: no input gives a 500, auth comes
before the body is parsed, every status code a route answers is documented in its OpenAPI schema, and a
pointer swap mid-stream never serves a mixed pair of model versions.

(schemathesis is not a dependency of the project; these are the equivalent hand-written cases.)
Helpers and the module fixtures `snapshot`, `models_v1`, `models_v2` come from test_api.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from test_api import (  # noqa: F401  (snapshot, models_v1, models_v2 are fixtures)
    AS_OF,
    TOKEN,
    Server,
    assert_no_leak,
    known_ids,
    models_v1,
    models_v2,
    pair,
    payload_of,
    publish,
    save_models,
    snapshot,
    start_server,
    wait_for,
    with_trend,
    write_online_store,
)

BATCH_LIMIT = 3
MAX_BODY_BYTES = 16_384
PROTECTED = [("POST", "/v1/predict"), ("POST", "/v1/predict/batch"), ("POST", "/v1/predict/features"),
             ("POST", "/v1/predict/features/batch"), ("GET", "/v1/models")]


@pytest.fixture(scope="module")
def server(tmp_path_factory, snapshot, models_v1) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("api_abuse") / "data"
    write_online_store(data_dir, snapshot)
    publish(data_dir, save_models(data_dir, models_v1))
    running = start_server(data_dir, data_dir.parent / "uvicorn.log", MLSYS_API_BATCH_LIMIT=str(BATCH_LIMIT),
                           MLSYS_API_MAX_BODY_BYTES=str(MAX_BODY_BYTES))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def features(snapshot) -> dict:
    return payload_of(with_trend(snapshot))


def raw_post(server: Server, path: str, content: bytes | str, token: str | None = TOKEN) -> httpx.Response:
    """POST a body exactly as given (JSON text a json.dumps would never write: surrogates, NaN, 1e400)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = httpx.post(f"{server.url}{path}", content=content, headers=headers, timeout=20)
    assert_no_leak(response)
    return response


def issues(response: httpx.Response) -> list[tuple[list, str]]:
    assert response.status_code == 422, response.text
    return [(issue["loc"], issue["type"]) for issue in response.json()["detail"]]


# --- text that is not Unicode ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path, body, loc", [
    ("/v1/predict", '{"customer_id": "\\ud800"}', ["body", "customer_id"]),
    ("/v1/predict/batch", '{"customer_ids": ["\\ud800"]}', ["body", "customer_ids", 0]),
    ("/v1/predict/batch", '{"customer_ids": ["C0000001", "a\\udfffb"]}', ["body", "customer_ids", 1]),
])
def test_a_lone_surrogate_is_422_naming_the_field(server: Server, path: str, body: str, loc: list):
    assert issues(raw_post(server, path, body)) == [(loc, "string_unicode")]


def test_a_lone_surrogate_in_a_features_label_is_422(server: Server, features: dict):
    body = json.dumps(features)[:-1] + ', "country": "\\udc00"}'
    body = body.replace('"country": "' + features["country"] + '", ', "", 1)
    assert issues(raw_post(server, "/v1/predict/features", body)) == [(["body", "country"], "string_unicode")]


def test_a_lone_surrogate_as_an_unknown_key_is_422_not_500(server: Server):
    response = raw_post(server, "/v1/predict", '{"customer_id": "C0000001", "\\ud800": 1}')
    assert issues(response) == [(["body"], "string_unicode")]


# --- auth before the body -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{", b'{"customer_id": ', b"\xff\xfe{}", b"[" * 5000 + b"]" * 5000, b"x" * 20_000],
                         ids=["truncated", "half", "not-utf8", "deep", "too-large"])
@pytest.mark.parametrize("token", [None, "wrong"])
def test_without_the_token_any_body_gets_401_before_it_is_read(server: Server, body: bytes, token: str | None):
    for method, path in PROTECTED:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.request(method, f"{server.url}{path}", content=body, timeout=20,
                                 headers={**headers, "Content-Type": "application/json"})
        assert response.status_code == 401, (path, response.status_code, response.text[:200])
        assert response.json() == {"detail": "missing or wrong bearer token"}
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("body, status", [
    (b"{", 422), (b'{"customer_id": ', 422), (b"\xff\xfe{}", 422), (b"[" * 5000 + b"]" * 5000, 400),
    (b"x" * 20_000, 413),
], ids=["truncated", "half", "not-utf8", "deep", "too-large"])
def test_with_the_token_a_broken_body_is_a_client_error_not_a_500(server: Server, body: bytes, status: int):
    for _method, path in PROTECTED[:4]:
        assert raw_post(server, path, body).status_code == status, path


# --- numbers and dates ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["spend_lifetime", "tx_30", "gap_mean_days", "btyd_p_alive"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400, "1e308"])
def test_absurd_numbers_are_422_naming_the_field(server: Server, features: dict, field: str, literal: str):
    body = json.dumps({**features, field: "__X__"}).replace('"__X__"', literal)
    assert [loc for loc, _kind in issues(raw_post(server, "/v1/predict/features", body))] == [["body", field]]


@pytest.mark.parametrize("as_of", ["9999-12-31", "0001-01-01", str(AS_OF.replace(year=AS_OF.year + 6)),
                                   str(AS_OF.replace(year=AS_OF.year - 6)), "2024-02-30", "not a date"])
def test_an_absurd_as_of_is_422_naming_it(server: Server, features: dict, as_of: str):
    response = raw_post(server, "/v1/predict/features", json.dumps({**features, "as_of": as_of}))
    assert [loc for loc, _kind in issues(response)] == [["body", "as_of"]]


@pytest.mark.parametrize("years", [-4, 4])
def test_an_as_of_within_a_few_years_of_the_store_is_scored(server: Server, features: dict, years: int):
    as_of = AS_OF.replace(year=AS_OF.year + years)
    response = raw_post(server, "/v1/predict/features", json.dumps({**features, "as_of": str(as_of)}))
    assert response.status_code == 200, response.text


# --- every status code is documented ------------------------------------------------------------------------


def _corpus(server: Server, snapshot, features: dict) -> list[tuple[str, str, bytes, str | None]]:
    """(method, path, body, token): valid, unknown, over-limit, broken, hostile and unauthenticated requests."""
    known = known_ids(snapshot, BATCH_LIMIT + 1)
    bodies = {
        "/v1/predict": [{"customer_id": known[0]}, {"customer_id": "C9999999"}, {"customer_id": ""}, {}],
        "/v1/predict/batch": [{"customer_ids": known[:2]}, {"customer_ids": known}, {"customer_ids": []}],
        "/v1/predict/features": [features, {**features, "as_of": "9999-12-31"}, {**features, "tx_30": -1}],
        "/v1/predict/features/batch": [{"rows": [features] * BATCH_LIMIT}, {"rows": [features] * (BATCH_LIMIT + 1)},
                                       {"rows": []}, {"rows": [features, {**features, "as_of": "0001-01-01"}]}],
    }
    corpus = [("POST", path, json.dumps(body).encode(), TOKEN) for path, items in bodies.items() for body in items]
    for path in bodies:
        corpus += [("POST", path, content, token) for content in (b"{", b"\xff", b"[" * 5000 + b"]" * 5000, b"x" * 20_000, b'{"\\ud800": 1}')
                   for token in (TOKEN, None)]
    corpus += [("GET", "/v1/models", b"", TOKEN), ("GET", "/v1/models", b"", "wrong"), ("GET", "/v1/health", b"", None)]
    return corpus


def test_every_status_code_a_route_answers_is_in_its_openapi_schema(server: Server, snapshot, features: dict):
    spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    seen = set()
    for method, path, content, token in _corpus(server, snapshot, features):
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        response = httpx.request(method, f"{server.url}{path}", content=content, headers=headers, timeout=20)
        documented = spec["paths"][path][method.lower()]["responses"]
        assert str(response.status_code) in documented, (method, path, response.status_code, sorted(documented))
        assert response.status_code < 500, (method, path, response.text[:300])
        seen.add(response.status_code)
    assert seen == {200, 400, 401, 404, 413, 422}  # the corpus reaches every client error the API has
    for method, path in PROTECTED:
        responses = spec["paths"][path][method.lower()]["responses"]
        assert {"401", "503"} <= set(responses), path
        assert responses["401"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}


# --- one pointer read per load --------------------------------------------------------------------------------


def _hammer(url: str, customer: str, stop: threading.Event, out: list[tuple[int, dict | None]]) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20) as client:
        while not stop.is_set():
            response = client.post("/v1/predict", json={"customer_id": customer})
            out.append((response.status_code, response.json().get("model_versions")))


def test_a_pointer_swap_mid_stream_never_serves_a_mixed_pair(tmp_path: Path, snapshot, models_v1, models_v2):
    data_dir = tmp_path / "data"
    write_online_store(data_dir, snapshot)
    first_versions, second_versions = save_models(data_dir, models_v1), save_models(data_dir, models_v2)
    first, second = publish(data_dir, first_versions), pair(second_versions)
    running = start_server(data_dir, tmp_path / "uvicorn.log", MLSYS_API_RELOAD_SECONDS="0.05")
    stop, answers = threading.Event(), []
    streams = [threading.Thread(target=_hammer, args=(running.url, known_ids(snapshot, 1)[0], stop, answers))
               for _ in range(3)]
    try:
        for stream in streams:
            stream.start()
        for swap in range(16):
            publish(data_dir, second_versions if swap % 2 == 0 else first_versions, f"swap {swap}")
            time.sleep(0.15)
        wait_for(lambda: running.health()["reloads"] >= 4, what="reloads")
    finally:
        stop.set()
        for stream in streams:
            stream.join(timeout=30)
        running.stop()
    pairs = [versions for _status, versions in answers]
    assert {status for status, _versions in answers} == {200}
    assert all(versions in (first, second) for versions in pairs), [v for v in pairs if v not in (first, second)][:3]
    assert first in pairs and second in pairs


@pytest.mark.parametrize("field", ["spend_180", "tx_30", "btyd_expected_purchases", "country"])
def test_a_boolean_is_not_a_number_or_a_label(server: Server, features: dict, field: str):
    response = raw_post(server, "/v1/predict/features", json.dumps({**features, field: False}))
    assert [loc for loc, _kind in issues(response)] == [["body", field]]


def test_the_openapi_schema_states_the_batch_limit_that_answers_413(server: Server, snapshot):
    spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    ids = spec["components"]["schemas"]["BatchRequest"]["properties"]["customer_ids"]
    at_limit = json.dumps({"customer_ids": known_ids(snapshot, BATCH_LIMIT)})
    over = json.dumps({"customer_ids": known_ids(snapshot, BATCH_LIMIT + 1)})
    assert ids["maxItems"] == BATCH_LIMIT
    assert raw_post(server, "/v1/predict/batch", at_limit).status_code == 200
    assert raw_post(server, "/v1/predict/batch", over).status_code == 413
