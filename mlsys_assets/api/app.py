"""The prediction API (FastAPI). Start it with `mlsys serve` or `make serve`.

Settings come from the environment: the data directory (storage.data_dir), MLSYS_API_TOKEN (required),
MLSYS_API_BATCH_LIMIT (default 1000 ids), MLSYS_API_MAX_BODY_BYTES (default 1 MiB), MLSYS_API_RELOAD_SECONDS
(default 1).

Order of refusals: a protected route without the right bearer token is 401 before any of the body is read
(BearerGate), then a body over the limit is 413 (BodySizeLimit), then unparseable JSON is 400/422 and a
schema violation 422 naming the field (lone surrogates, NaN, Infinity, out-of-range numbers, an `as_of`
more than AS_OF_MAX_YEARS from the online store's day). Every status code a route answers is declared in
its `responses=` (the OpenAPI schema); a 500 is a bug.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import logging
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import fastapi_offline
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from mlsys_assets.api.schemas import (
    AS_OF_MAX_YEARS,
    BatchRequest,
    BatchResponse,
    CustomerRequest,
    ErrorResponse,
    FeaturePayload,
    Prediction,
    ValidationErrorResponse,
)
from mlsys_assets.api.state import ServingState, StateHolder
from mlsys_assets.features.derived import season_features
from mlsys_assets.storage import DataLayout, data_dir

log = logging.getLogger("mlsys.api")


@dataclass(frozen=True)
class ApiSettings:
    serving_root: Path
    token: str
    batch_limit: int = 1000
    max_body_bytes: int = 1 << 20
    reload_seconds: float = 1.0

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


class BodySizeLimit:
    """Refuses request bodies above the limit with 413 (declared or chunked) before the app sees them."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and int(declared) > self.max_bytes:
            return await self._reject(send)
        # Bodies here are small JSON documents: read the whole body first, then replay it to the app.
        messages, received = [], 0
        while True:
            message = await receive()
            messages.append(message)
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                return await self._reject(send)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send):
        body = b'{"detail":"request body too large"}'
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


UNAUTHORIZED_BODY = b'{"detail":"missing or wrong bearer token"}'


def bearer_ok(headers: list[tuple[bytes, bytes]], expected_token: bytes) -> bool:
    """`Authorization: Bearer <token>` (scheme case-insensitive, as HTTPBearer reads it), compared in constant time."""
    value = dict(headers).get(b"authorization", b"")
    scheme, _, presented = value.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(presented, expected_token)


class BearerGate:
    """Refuses a protected path without the right token with 401 BEFORE the body is read or parsed: an
    unauthenticated client learns nothing from schema errors (422) or body limits (413)."""

    def __init__(self, app, protected: set[str], expected_token: bytes):
        self.app, self.protected, self.expected_token = app, protected, expected_token

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in self.protected and not bearer_ok(
            scope.get("headers", []), self.expected_token
        ):
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                    (b"content-length", str(len(UNAUTHORIZED_BODY)).encode())]})
            return await send({"type": "http.response.body", "body": UNAUTHORIZED_BODY})
        return await self.app(scope, receive, send)


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


def _as_of_out_of_range(day: dt.date, served_day: dt.date) -> RequestValidationError | None:
    if abs((day - served_day).days) <= AS_OF_MAX_YEARS * 366:
        return None
    return RequestValidationError([{
        "loc": ("body", "as_of"), "type": "date_out_of_range",
        "msg": f"as_of {day} is more than {AS_OF_MAX_YEARS} years from the online store's day {served_day}",
    }])


def feature_frame(payload: FeaturePayload, served_day: dt.date) -> pd.DataFrame:
    """The model's feature row for a payload: its fields plus the features derived from its as-of day
    (default: the online store's day), by the formula the snapshot SQL uses (features/derived.py)."""
    row = payload.model_dump()
    day = row.pop("as_of") or served_day
    out_of_range = _as_of_out_of_range(day, served_day)
    if out_of_range:
        raise out_of_range
    row.update(season_features(day))
    # A null field is a missing value (NaN) to the models, as NULL is in the snapshot.
    return pd.DataFrame([row]).astype({k: float for k, v in row.items() if v is None})


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings.from_env()
    holder = StateHolder(settings.serving_root, settings.reload_seconds)
    bearer = HTTPBearer(auto_error=False)
    expected_token = settings.token.encode()

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
        docs_url=None,  # FastAPI's /docs and /redoc load from a CDN: _serve_docs_offline replaces them
        redoc_url=None,
    )
    app.state.holder = holder
    _serve_docs_offline(app)

    # Both dependencies are async on purpose: a plain `def` dependency runs in a worker thread, which
    # doubled the cost of a /v1/predict lookup (bench/serving.py, docs/benchmarks.md).
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

    def answer(state: ServingState, customer_id: str | None, spend: float, churn: float, segment: str) -> Prediction:
        return Prediction(customer_id=customer_id, predicted_spend=spend, churn_probability=churn, risk_segment=segment,
                          horizon_days=state.horizon_days, features_as_of=state.features_as_of,
                          model_versions=state.versions)

    @app.post("/v1/predict", response_model=Prediction, dependencies=[Depends(authorized)],
              responses={**AUTH_ERRORS, **BODY_ERRORS, **NOT_READY,
                         404: _error("The customer is not in the online feature store.")})
    async def predict(request: CustomerRequest, state: ServingState = Depends(serving)) -> Prediction:
        found = state.predictions.get(request.customer_id)
        if found is None:
            raise HTTPException(
                status_code=404,
                detail=f"unknown customer {request.customer_id!r}: not in the online feature store as of "
                       f"{state.features_as_of}; POST its features to /v1/predict/features instead",
            )
        return answer(state, request.customer_id, *found)

    @app.post("/v1/predict/batch", response_model=BatchResponse, dependencies=[Depends(authorized)],
              responses={**AUTH_ERRORS, **BODY_ERRORS, **NOT_READY,
                         413: _error("The body is too large, or holds more than MLSYS_API_BATCH_LIMIT ids.")})
    async def predict_batch(request: BatchRequest, state: ServingState = Depends(serving)) -> BatchResponse:
        if len(request.customer_ids) > settings.batch_limit:
            raise HTTPException(status_code=413, detail=f"{len(request.customer_ids)} customer ids: at most "
                                                        f"{settings.batch_limit} per request")
        predictions, unknown = [], []
        for customer_id in request.customer_ids:
            found = state.predictions.get(customer_id)
            if found is None:
                unknown.append(customer_id)
            else:
                predictions.append(answer(state, customer_id, *found))
        return BatchResponse(predictions=predictions, unknown_customer_ids=unknown)

    @app.post("/v1/predict/features", response_model=Prediction, dependencies=[Depends(authorized)],
              responses={**AUTH_ERRORS, **BODY_ERRORS, **NOT_READY})
    async def predict_features(payload: FeaturePayload, state: ServingState = Depends(serving)) -> Prediction:
        frame = feature_frame(payload, state.features_as_of)
        scores = await run_in_threadpool(state.models.score, frame)
        first = scores.iloc[0]
        return answer(state, None, float(first["predicted_spend"]), float(first["churn_probability"]),
                      str(first["risk_segment"]))

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

    @app.get("/v1/models", dependencies=[Depends(authorized)], responses={**AUTH_ERRORS, **NOT_READY})
    async def models(state: ServingState = Depends(serving)) -> dict:
        described = {}
        for name, loaded in (("ltv", state.models.ltv), ("churn", state.models.churn)):
            card = loaded.version.card()
            described[name] = {
                "version": loaded.version.version,
                # "catboost", or "btyd": BG/NBD + Gamma-Gamma serves this target (the gate's fallback)
                "kind": loaded.forecaster.kind,
                "backtest_metrics": card.get("metrics", {}).get("backtest"),
                "trained_at": card.get("trained_at"),
                "training_window": card.get("training_window", {}).get("first_as_of", "") + " … "
                                   + card.get("training_window", {}).get("last_as_of", ""),
                "holdout_as_of": card.get("holdout_as_of"),
                "holdout_metrics": card.get("metrics", {}).get("holdout"),
                "features": loaded.features,
            }
        return described

    @app.get("/v1/bare", include_in_schema=False)
    async def bare() -> dict:
        """A constant answer: the floor this stack allows (bench/serving.py compares against it)."""
        return {"ok": True}

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

    _document_batch_limit(app, settings.batch_limit)
    protected = {route.path for route in app.routes if isinstance(route, APIRoute)
                 and any(dependency.dependency is authorized for dependency in route.dependencies)}
    return BearerGate(BodySizeLimit(app, settings.max_body_bytes), protected, expected_token)


# The Swagger UI and ReDoc bundles that the fastapi-offline package ships (FastAPI's defaults load them from
# cdn.jsdelivr.net and Google Fonts: blank pages without internet).
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS_URL = "/docs-assets"
# ReDoc's sidebar shows Redocly's logo from this URL, with no option to turn it off. An empty data: image
# instead fails to decode at once, and ReDoc then drops the <img>: no request leaves the machine.
REDOCLY_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
# The pages may load only from this server (plus their inline script and styles, data: images and ReDoc's
# blob: worker): should a newer bundle reach out again, the browser refuses.
DOCS_CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                "style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:")


@functools.cache
def _redoc_bundle() -> bytes:
    return (DOCS_ASSETS / "redoc.standalone.js").read_bytes().replace(REDOCLY_LOGO, b"data:,")


def _serve_docs_offline(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from local files. Like openapi.json, the pages and their assets need no
    token: they describe the API and answer nothing."""

    @app.get(f"{DOCS_ASSETS_URL}/redoc.standalone.js", include_in_schema=False)
    async def redoc_bundle() -> Response:  # before the mount, which would serve the file unchanged
        return Response(_redoc_bundle(), media_type="text/javascript")

    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    def offline(page: HTMLResponse) -> HTMLResponse:
        page.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return page

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return offline(get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css", swagger_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png"))

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return offline(get_redoc_html(
            openapi_url=app.openapi_url, title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS_URL}/redoc.standalone.js", redoc_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False))


def _document_batch_limit(app: FastAPI, limit: int) -> None:
    """The batch limit is a setting, not a constant of the model: put it in the OpenAPI schema (maxItems) so
    clients and schema-driven testers know that more ids than this is a 413."""
    described = app.openapi

    def openapi_with_the_batch_limit() -> dict:
        schema = described()
        schema["components"]["schemas"]["BatchRequest"]["properties"]["customer_ids"]["maxItems"] = limit
        return schema

    app.openapi = openapi_with_the_batch_limit


def app_from_env():
    """uvicorn factory: `uvicorn --factory mlsys_assets.api.app:app_from_env`."""
    return create_app()
