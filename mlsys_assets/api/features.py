"""The on-the-fly path: a /v1/predict/features payload becomes the model's feature row without pandas.

A row is the payload's fields plus every feature derived from its as-of day (default: the online store's
day), computed by features/derived.py, the one definition the snapshot SQL renders too; so a stored
customer's payload gives exactly its snapshot row (mlsys_tests/test_feature_parity.py) and the models'
answer for it (mlsys_tests/test_features_scoring.py). `ProductionModels.score_rows` scores the rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from mlsys_assets.api.schemas import AS_OF_MAX_YEARS, FeaturePayload
from mlsys_assets.features.derived import derived_features

log = logging.getLogger("mlsys.api")


def _as_of_issue(day: dt.date, served_day: dt.date, loc: tuple) -> dict | None:
    if abs((day - served_day).days) <= AS_OF_MAX_YEARS * 366:
        return None
    return {"loc": (*loc, "as_of"), "type": "date_out_of_range",
            "msg": f"as_of {day} is more than {AS_OF_MAX_YEARS} years from the online store's day {served_day}"}


def _row(payload: FeaturePayload, served_day: dt.date, loc: tuple, issues: list[dict]) -> dict[str, object]:
    row = payload.model_dump()
    day = row.pop("as_of") or served_day
    issue = _as_of_issue(day, served_day, loc)
    if issue:
        issues.append(issue)
    row.update(derived_features(day))
    return row


def feature_row(payload: FeaturePayload, served_day: dt.date) -> dict[str, object]:
    """The model's feature row for a payload, as plain values (None = missing, as NULL is in the snapshot);
    an `as_of` more than AS_OF_MAX_YEARS from the online store's day is a 422 naming it."""
    issues: list[dict] = []
    row = _row(payload, served_day, ("body",), issues)
    if issues:
        raise RequestValidationError(issues)
    return row


def feature_rows(payloads: Sequence[FeaturePayload], served_day: dt.date) -> list[dict[str, object]]:
    """`feature_row` for each payload of a batch body (`rows`); every out-of-range `as_of` is named by its index."""
    issues: list[dict] = []
    rows = [_row(payload, served_day, ("body", "rows", i), issues) for i, payload in enumerate(payloads)]
    if issues:
        raise RequestValidationError(issues)
    return rows


class RowBatcher:
    """Scores the rows of feature requests that arrive together in one `score_rows` call.

    A request's row waits only for the event loop's current round: the first row of a round schedules the
    scoring with `call_soon`, so every request whose handler runs in the same round (uvicorn starts a task
    for each request it has read) joins it, and a lone request is scored at once. One CatBoost call then
    serves many concurrent requests: its fixed cost (~50 µs a call) is paid per round, not per request.
    The answers are those of a one-row call: CatBoost scores each row on its own.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[object, dict[str, object], asyncio.Future]] = []

    async def score(self, models, row: dict[str, object]) -> tuple[float, float, str]:
        """(spend, churn probability, risk segment) of `row` by `models` (a ProductionModels)."""
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)
        future = loop.create_future()
        self._pending.append((models, row, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        by_models: dict[int, list[tuple[object, dict[str, object], asyncio.Future]]] = {}
        for item in pending:  # a reload between two requests of a round: each keeps the state it started with
            by_models.setdefault(id(item[0]), []).append(item)
        for items in by_models.values():
            try:
                spend, churn, segment = items[0][0].score_rows([row for _, row, _ in items])
            except Exception as exc:  # every waiting request gets the error (a 500, logged by the app)
                for _, _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), scored in zip(items, zip(spend.tolist(), churn.tolist(), segment.tolist())):
                if not future.done():  # a client that went away cancelled its request
                    future.set_result(scored)


FEATURES_PATH = "/v1/predict/features"
INTERNAL_ERROR_BODY = b'{"detail":"internal error; see the server log"}'


class FeaturesFastPath:
    """POST /v1/predict/features without the framework on its happy path.

    FastAPI's routing, dependencies, JSON decoding, validation of the decoded dict and response model cost
    a request about as much as scoring it (bench/serving.py). This layer, behind the bearer gate and the body
    limit, validates the raw body with the route's own model (`FeaturePayload.model_validate_json`), builds the
    row with `feature_row`, scores it with the route's `RowBatcher` and writes the route's answer (`answer`,
    serialized by pydantic as FastAPI serializes the route's response model: the same bytes). Anything else, a request that breaks the schema, an `as_of`
    out of range, a body that is not JSON, no model served yet, is handed to the FastAPI route unchanged,
    which answers it as documented: the two give the same answers (mlsys_tests/test_features_scoring.py).
    """

    def __init__(self, app, holder, batcher: RowBatcher, answer: Callable):
        self.app, self.holder, self.batcher, self.answer = app, holder, batcher, answer

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != FEATURES_PATH or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        messages = [await receive()]
        while messages[-1]["type"] == "http.request" and messages[-1].get("more_body", False):
            messages.append(await receive())
        state = self.holder.state
        row = None if state is None else self._row(scope, messages, state.features_as_of)
        if row is None:
            async def replay():
                return messages.pop(0) if messages else await receive()

            return await self.app(scope, replay, send)
        try:
            spend, churn, segment = await self.batcher.score(state.models, row)
            # serialized by pydantic, as FastAPI serializes a response_model: the same bytes as the route's
            body, status, extra = self.answer(state, None, spend, churn, segment).model_dump_json().encode(), 200, []
        except Exception:  # as the app's own handler: logged, a generic 500, the connection announced to close
            log.exception("unhandled error")
            body, status, extra = INTERNAL_ERROR_BODY, 500, [(b"connection", b"close")]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json"),
                                *extra]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _row(scope, messages: list[dict], served_day: dt.date) -> dict[str, object] | None:
        """The request's feature row, or None for anything the route itself must answer."""
        for name, value in scope["headers"]:
            if name == b"content-type" and not value.split(b";")[0].strip().lower().endswith(b"json"):
                return None
        if any(message["type"] != "http.request" for message in messages):
            return None
        try:
            payload = FeaturePayload.model_validate_json(b"".join(message.get("body", b"") for message in messages))
            return feature_row(payload, served_day)
        except (ValidationError, RequestValidationError, ValueError, RecursionError):
            return None
