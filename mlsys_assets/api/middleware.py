"""ASGI layers in front of the FastAPI app: the bearer token first (401 before any of the body is read), then
the body size limit (413). Both answer by themselves; the app sees only requests that passed."""

from __future__ import annotations

import hmac

UNAUTHORIZED_BODY = b'{"detail":"missing or wrong bearer token"}'


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
