"""The prediction API (FastAPI). Start it with `mlsys serve` or `make serve`.

Settings come from the environment: the data directory (storage.data_dir), MLSYS_API_TOKEN (required),
MLSYS_API_BATCH_LIMIT (default 1000 ids or feature rows), MLSYS_API_MAX_BODY_BYTES (default 1 MiB),
MLSYS_API_RELOAD_SECONDS (default 1).

Order of refusals: a protected route without the right bearer token is 401 before any of the body is read
(BearerGate), then a body over the limit is 413 (BodySizeLimit), then unparseable JSON is 400/422 and a
schema violation 422 naming the field (lone surrogates, NaN, Infinity, out-of-range numbers, an `as_of`
more than AS_OF_MAX_YEARS from the online store's day). Every status code a route answers is declared in
its `responses=` (the OpenAPI schema); a 500 is a bug.

Known customers are a lookup (state.py scores the whole online store at load). Posted features are scored
on the request, without pandas: the payload's values become the models' rows (features.py) and
`ProductionModels.score_rows` makes one CatBoost call per model for the whole request (one row, or a batch).
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mlsys_assets.api.docs import document_batch_limit, serve_docs_offline
from mlsys_assets.api.features import FeaturesFastPath, RowBatcher, feature_row, feature_rows
from mlsys_assets.api.middleware import BearerGate, BodySizeLimit
from mlsys_assets.api.schemas import (
    BatchRequest,
    BatchResponse,
    CustomerRequest,
    ErrorResponse,
    FeatureBatchRequest,
    FeatureBatchResponse,
    FeaturePayload,
    Prediction,
    ValidationErrorResponse,
)
from mlsys_assets.api.state import ServingState, StateHolder
from mlsys_assets.storage import DataLayout, data_dir

log = logging.getLogger("mlsys.api")


@dataclass(frozen=True)
class ApiSettings:
    serving_root: Path
    token: str
    batch_limit: int = 1000
    max_body_bytes: int = 1 << 20
    reload_seconds: float = 1.0
    # POST /v1/predict/features answered without the framework when the request is valid (features.py:
    # FeaturesFastPath); off, FastAPI answers every request. The answers are the same.
    features_fast_path: bool = True

    @classmethod
    def from_env(cls) -> ApiSettings:
        token = os.environ.get("MLSYS_API_TOKEN", "")
        if not token:
            raise RuntimeError("MLSYS_API_TOKEN is not set: the API refuses to start without a bearer token")
        return cls(
            serving_root=DataLayout(data_dir()).serving,
            token=token,
            batch_limit=int(os.environ.get("MLSYS_API_BATCH_LIMIT", "1000")),
            max_body_bytes=int(os.environ.get("MLSYS_API_MAX_BODY_BYTES", str(1 << 20))),
            reload_seconds=float(os.environ.get("MLSYS_API_RELOAD_SECONDS", "1")),
        )


def _error(description: str, model=ErrorResponse) -> dict:
    return {"model": model, "description": description}


# Every status code a route can answer (the OpenAPI schema documents them; a 500 is a bug, not documented).
BODY_ERRORS = {
    400: _error("The body is not parseable JSON (bad UTF-8, nesting too deep)."),
    413: _error("The body is larger than MLSYS_API_MAX_BODY_BYTES (default 1 MiB)."),
    422: _error("The body breaks the schema; each issue names its field in `loc`.", ValidationErrorResponse),
}
AUTH_ERRORS = {401: _error("Missing or wrong `Authorization: Bearer` token (checked before the body is read).")}
NOT_READY = {503: _error("No production model is being served yet (or the first load failed).")}


@dataclass(frozen=True)
class Guards:
    """The routes' dependencies. Both are async on purpose: a plain `def` dependency runs in a worker thread,
    which doubled the cost of a /v1/predict lookup (bench/serving.py, docs/benchmarks.md)."""

    authorized: Callable  # the bearer token (BearerGate refused a wrong one already; this documents it)
    serving: Callable  # the current ServingState, or 503


def _guards(holder: StateHolder, expected_token: bytes) -> Guards:
    bearer = HTTPBearer(auto_error=False)

    async def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        presented = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(presented, expected_token):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    async def serving() -> ServingState:
        state = holder.state
        if state is None:
            raise HTTPException(status_code=503, detail=f"no model is being served: {holder.last_error or 'loading'}")
        return state

    return Guards(authorized, serving)


def answer(state: ServingState, customer_id: str | None, spend: float, churn: float, segment: str) -> Prediction:
    return Prediction(customer_id=customer_id, predicted_spend=spend, churn_probability=churn, risk_segment=segment,
                      horizon_days=state.horizon_days, features_as_of=state.features_as_of,
                      model_versions=state.versions)


def _within_batch_limit(count: int, limit: int, what: str) -> None:
    if count > limit:
        raise HTTPException(status_code=413, detail=f"{count} {what}: at most {limit} per request")


def create_app(settings: ApiSettings | None = None):
    """The ASGI app: FastAPI behind the bearer gate and the body size limit."""
    settings = settings or ApiSettings.from_env()
    holder = StateHolder(settings.serving_root, settings.reload_seconds)
    expected_token = settings.token.encode()
    guards = _guards(holder, expected_token)
    batcher = RowBatcher()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        holder.start()
        yield
        holder.stop()

    app = FastAPI(
        title="mlsys prediction API",
        version="1",
        description="Customer LTV and churn forecasts from the production models. The prediction routes and "
                    "/v1/models need `Authorization: Bearer $MLSYS_API_TOKEN`.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's /docs and /redoc load from a CDN: serve_docs_offline replaces them
        redoc_url=None,
    )
    app.state.holder = holder
    serve_docs_offline(app)
    _add_lookup_routes(app, guards, settings.batch_limit)
    _add_feature_routes(app, guards, settings.batch_limit, batcher)
    _add_service_routes(app, guards, holder)
    _add_error_handlers(app)
    document_batch_limit(app, settings.batch_limit)
    protected = {route.path for route in app.routes if isinstance(route, APIRoute)
                 and any(dependency.dependency is guards.authorized for dependency in route.dependencies)}
    inner = FeaturesFastPath(app, holder, batcher, answer) if settings.features_fast_path else app
    return BearerGate(BodySizeLimit(inner, settings.max_body_bytes), protected, expected_token)


def _add_lookup_routes(app: FastAPI, guards: Guards, batch_limit: int) -> None:
    """Known customers: their answers were scored when the online store was loaded."""

    @app.post("/v1/predict", response_model=Prediction, dependencies=[Depends(guards.authorized)],
              responses={**AUTH_ERRORS, **BODY_ERRORS, **NOT_READY,
                         404: _error("The customer is not in the online feature store.")})
    async def predict(request: CustomerRequest, state: ServingState = Depends(guards.serving)) -> Prediction:
        found = state.predictions.get(request.customer_id)
        if found is None:
            raise HTTPException(
                status_code=404,
                detail=f"unknown customer {request.customer_id!r}: not in the online feature store as of "
                       f"{state.features_as_of}; POST its features to /v1/predict/features instead",
            )
        return answer(state, request.customer_id, *found)

    @app.post("/v1/predict/batch", response_model=BatchResponse, dependencies=[Depends(guards.authorized)],
              responses={**AUTH_ERRORS, **BODY_ERRORS, **NOT_READY,
                         413: _error("The body is too large, or holds more than MLSYS_API_BATCH_LIMIT ids.")})
    async def predict_batch(request: BatchRequest, state: ServingState = Depends(guards.serving)) -> BatchResponse:
        _within_batch_limit(len(request.customer_ids), batch_limit, "customer ids")
        predictions, unknown = [], []
        for customer_id in request.customer_ids:
            found = state.predictions.get(customer_id)
            if found is None:
                unknown.append(customer_id)
            else:
                predictions.append(answer(state, customer_id, *found))
        return BatchResponse(predictions=predictions, unknown_customer_ids=unknown)


def _add_feature_routes(app: FastAPI, guards: Guards, batch_limit: int, batcher: RowBatcher) -> None:
    """Posted features, scored on the request without pandas: one CatBoost call per model per request (or
    per round of the event loop: `RowBatcher`). A valid single request is answered by `FeaturesFastPath`
    before it reaches this route, with the same functions."""

    @app.post("/v1/predict/features", response_model=Prediction, dependencies=[Depends(guards.authorized)],
              responses={**AUTH_ERRORS, **BODY_ERRORS, **NOT_READY})
    async def predict_features(payload: FeaturePayload, state: ServingState = Depends(guards.serving)) -> Prediction:
        # On the event loop (a row takes CatBoost ~0.07 ms, less than a hop to the thread pool and back), with
        # the rows of the requests that arrived in the same round of the loop: one CatBoost call per model.
        spend, churn, segment = await batcher.score(state.models, feature_row(payload, state.features_as_of))
        return answer(state, None, spend, churn, segment)

    @app.post("/v1/predict/features/batch", response_model=FeatureBatchResponse,
              dependencies=[Depends(guards.authorized)],
              responses={**AUTH_ERRORS, **BODY_ERRORS, **NOT_READY,
                         413: _error("The body is too large, or holds more than MLSYS_API_BATCH_LIMIT rows.")})
    async def predict_features_batch(request: FeatureBatchRequest,
                                     state: ServingState = Depends(guards.serving)) -> FeatureBatchResponse:
        """Several customers' features at once: the answers in the order of `rows`, each as
        /v1/predict/features would give it."""
        _within_batch_limit(len(request.rows), batch_limit, "rows")
        rows = feature_rows(request.rows, state.features_as_of)
        # A thousand rows take milliseconds: off the event loop, so lookups keep being answered meanwhile.
        spend, churn, segment = await run_in_threadpool(state.models.score_rows, rows)
        return FeatureBatchResponse(predictions=[
            answer(state, None, *scored) for scored in zip(spend.tolist(), churn.tolist(), segment.tolist())])


def _add_service_routes(app: FastAPI, guards: Guards, holder: StateHolder) -> None:
    @app.get("/v1/health")
    async def health() -> dict:
        state = holder.state
        return {
            "status": "ok" if state else "not_ready",
            "models": state.versions if state else None,
            "features_as_of": str(state.features_as_of) if state else None,
            "customers": len(state.predictions) if state else 0,
            "loaded_at": state.loaded_at.isoformat() if state else None,
            "reloads": holder.reloads,
            "last_reload_error": holder.last_error,
        }

    @app.get("/v1/models", dependencies=[Depends(guards.authorized)], responses={**AUTH_ERRORS, **NOT_READY})
    async def models(state: ServingState = Depends(guards.serving)) -> dict:
        return {name: _describe(loaded) for name, loaded in (("ltv", state.models.ltv), ("churn", state.models.churn))}

    @app.get("/v1/bare", include_in_schema=False)
    async def bare() -> dict:
        """A constant answer: the floor this stack allows (bench/serving.py compares against it)."""
        return {"ok": True}


def _describe(loaded) -> dict:
    card = loaded.version.card()
    window = card.get("training_window", {})
    return {
        "version": loaded.version.version,
        # "catboost", or "btyd": BG/NBD + Gamma-Gamma serves this target (the gate's fallback)
        "kind": loaded.forecaster.kind,
        "backtest_metrics": card.get("metrics", {}).get("backtest"),
        "trained_at": card.get("trained_at"),
        "training_window": window.get("first_as_of", "") + " … " + window.get("last_as_of", ""),
        "holdout_as_of": card.get("holdout_as_of"),
        "holdout_metrics": card.get("metrics", {}).get("holdout"),
        "features": loaded.features,
    }


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Without the offending input: it may not even be JSON-encodable (NaN, Infinity, lone surrogates).
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.exception_handler(Exception)
    async def no_stack_traces(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        # Say the connection closes, so a pooled client does not reuse a socket uvicorn is about to drop.
        return JSONResponse(status_code=500, content={"detail": "internal error; see the server log"},
                            headers={"Connection": "close"})


def app_from_env():
    """uvicorn factory: `uvicorn --factory mlsys_assets.api.app:app_from_env`."""
    return create_app()
