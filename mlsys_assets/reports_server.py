"""`mlsys reports serve`: the monitoring reports folder (data/reports/) over HTTP, read-only, on loopback.

The report links in the Dagster UI point here (`settings.reports_url()`); `make ui` starts it beside
`dagster dev`.

Starlette's StaticFiles under uvicorn (both already serve the API) rather than the standard library's
SimpleHTTPRequestHandler: StaticFiles resolves every requested file, and a folder's index.html, to its real
path and refuses whatever lies outside the folder (no `..`, encoded or not, and no symlink escape), never
lists a folder and answers only GET and HEAD. The stdlib handler follows symlinks out and lists folders, and
would need overriding in several places to do the same.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlsys_assets.settings import REPORTS_URL_SETTING, reports_url


class ReportsServerError(Exception):
    """The server cannot start (the port is taken, the host is not ours): one line for the user."""


class ReportFiles(StaticFiles):
    """The reports folder; `/` is its index.html."""

    def __init__(self, root: Path):
        super().__init__(directory=root, html=True, check_dir=False)

    async def check_config(self) -> None:
        # Starlette fails the first request with a 500 if the folder is missing; here it is a 404 until the
        # first `mlsys monitor` writes the folder, which the server then serves without a restart.
        return None


class NoStore:
    """`Cache-Control: no-store` on every answer: the reports and their index are rewritten daily under
    the same names, and a cached index would hide the newest day."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"cache-control", b"no-store")]
            await send(message)

        await self.app(scope, receive, send_no_store)


def reports_app(root: Path) -> Starlette:
    """The ASGI app that serves `root` (the data directory's reports/)."""

    async def not_found(_request: Request, _exc: HTTPException) -> PlainTextResponse:
        hint = "" if root.is_dir() else f": no reports yet in {root}; run `mlsys monitor` first"
        return PlainTextResponse(f"Not Found{hint}", status_code=404)

    return Starlette(routes=[Mount("/", app=ReportFiles(root))], middleware=[Middleware(NoStore)],
                     exception_handlers={404: not_found})


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here rather than by uvicorn, which logs a taken port as a multi-line error
    and exits the process."""
    try:
        return socket.create_server((host, port))
    except OSError as error:
        reason = ("the port is taken (is `mlsys reports serve` already running? --port picks another)"
                  if error.errno == errno.EADDRINUSE else str(error))
        raise ReportsServerError(f"cannot serve the reports on {host}:{port}: {reason}") from error


def server(root: Path) -> uvicorn.Server:
    """A uvicorn server for `root` that logs only warnings and errors, no access log; run it with
    `.run(sockets=[listen(host, port)])`."""
    config = uvicorn.Config(reports_app(root), log_level="warning", access_log=False, lifespan="off")
    return uvicorn.Server(config)


def serve(root: Path, host: str, port: int, echo: Callable[..., None]) -> None:
    """Serve `root` on host:port until interrupted."""
    sock = listen(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"
    if not root.is_dir():
        echo(f"no reports yet in {root}: run `mlsys monitor` first (served from then on, no restart needed)",
             err=True)
    if reports_url() != url:
        echo(f"note: the report links in the Dagster UI point to {reports_url()} ({REPORTS_URL_SETTING})", err=True)
    echo(f"mlsys reports on {url}/ serving {root} (read-only; Ctrl+C stops)")
    server(root).run(sockets=[sock])
