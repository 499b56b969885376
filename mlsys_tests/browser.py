"""A real Chromium for the tests: open a page offline and say everything that is wrong with it.

`Browser.visit(url)` opens `url` in a fresh browser context in which every request to a host other than
127.0.0.1 / localhost is aborted and recorded (data: and blob: URLs never reach the network and are fine),
waits until the page shows what it should, then collects:

- console errors (`console.error`, failed resource loads) and uncaught exceptions (`pageerror`),
- the remote requests it attempted (HTTP and WebSocket), and loopback sub-resources that failed or answered >= 400,
- its visible text (`document.body.innerText`): a blank page is a broken page,
- every `<a href>`: loopback links are fetched (each must answer 200), same-page `#fragment` links must name
  an element (`#/route` fragments are a client-side router's), other hosts are listed but not followed
  (a link is not a request the page makes),
- `document.documentElement.scrollWidth` at the viewport width (1400 px): wider means a horizontal scrollbar.

`Visit.problems()` turns that into one line per problem; `Visit.assert_clean()` fails with all of them.
The harness itself is tested on synthetic broken pages (mlsys_tests/test_browser.py), so each check is
seen failing.

Chromium is Debian's (`apt-get install chromium`), driven by Playwright's Python client; `playwright
install` (a browser download) is never needed. Without chromium the browser tests skip locally and fail
when `CI` is set (.ci/run sets it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest

from mlsys_tests.servers import Service, spawn, wait_until_ready

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
LOCAL_SCHEMES = {"data", "blob", "about"}
VIEWPORT = {"width": 1400, "height": 900}
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_executable() -> str | None:
    return shutil.which("chromium")


def require_chromium() -> str:
    """Debian's chromium, or skip (locally) / fail (when CI is set: a guard that never runs guards nothing)."""
    path = chromium_executable()
    if path:
        return path
    reason = "Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI is set, so the browser tests must run", pytrace=False)
    pytest.skip(reason)


def is_loopback(url: str) -> bool:
    return urlsplit(url).hostname in LOOPBACK_HOSTS


def is_allowed(url: str) -> bool:
    return urlsplit(url).scheme in LOCAL_SCHEMES or is_loopback(url)


@dataclass
class Visit:
    """What one page did while it was open, and its state once it was ready."""

    url: str
    page: object = None  # the Playwright page, open inside `Browser.visit`
    status: int | None = None
    ready_error: str | None = None
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    remote_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    text: str = ""
    links: dict[str, int | str] = field(default_factory=dict)  # loopback link -> status (or the error)
    missing_anchors: list[str] = field(default_factory=list)
    external_links: list[str] = field(default_factory=list)
    scroll_width: int = 0

    def problems(self, max_width: int | None = VIEWPORT["width"], min_text: int = 20) -> list[str]:
        found = []
        if self.status != 200:
            found.append(f"answered HTTP {self.status}")
        if self.ready_error:
            found.append(f"never became ready: {self.ready_error}")
        if len(self.text.strip()) < min_text:
            found.append(f"blank: {len(self.text.strip())} characters of visible text ({self.text.strip()[:80]!r})")
        found += [f"console error: {message}" for message in self.console_errors]
        found += [f"uncaught exception: {message}" for message in self.page_errors]
        found += [f"remote request attempted: {url}" for url in self.remote_requests]
        found += [f"loopback request failed: {what}" for what in self.failed_requests]
        found += [f"link {url} answered {status}" for url, status in self.links.items() if status != 200]
        found += [f"link #{anchor} names no element on the page" for anchor in self.missing_anchors]
        if max_width is not None and self.scroll_width > max_width:
            found.append(f"overflows: document scrollWidth {self.scroll_width} px > {max_width} px")
        return found

    def assert_clean(self, max_width: int | None = VIEWPORT["width"], min_text: int = 20) -> None:
        found = self.problems(max_width=max_width, min_text=min_text)
        assert not found, f"{self.url}:\n  " + "\n  ".join(found)


class Browser:
    """One headless Chromium; each `visit` gets a fresh context (no cache, no cookies, no service worker)."""

    def __init__(self, browser) -> None:
        self.browser = browser

    @contextmanager
    def visit(self, url: str, ready: str | None = None, ready_function: str | None = None,
              settle_ms: int = 500, timeout_ms: int = 30_000, check_links: bool = True,
              viewport: dict | None = None) -> Iterator[Visit]:
        """Open `url`, wait for the `ready` selector to be visible (and `ready_function` to return true),
        let late errors arrive for `settle_ms`, collect; the page stays open inside the block."""
        visit = Visit(url)
        context = self.browser.new_context(viewport=viewport or VIEWPORT, service_workers="block")
        try:
            context.set_default_timeout(timeout_ms)
            context.route("**/*", lambda route: _route(route, visit))
            context.route_web_socket("**/*", lambda socket: _route_socket(socket, visit))
            page = context.new_page()
            visit.page = page
            page.on("console", lambda message: _console(message, visit))
            page.on("pageerror", lambda error: visit.page_errors.append(_one_line(f"{error.name}: {error.message}")))
            page.on("requestfailed", lambda request: _request_failed(request, visit))
            page.on("response", lambda response: _response(response, visit))
            response = page.goto(url, wait_until="load")
            visit.status = response.status if response else None
            try:
                if ready:
                    page.wait_for_selector(ready, state="visible")
                if ready_function:
                    page.wait_for_function(ready_function)
            except Exception as error:  # noqa: BLE001: a page that never gets ready is a finding, not a crash
                visit.ready_error = _one_line(str(error))
            page.wait_for_timeout(settle_ms)
            visit.text = page.evaluate("() => document.body ? document.body.innerText : ''")
            visit.scroll_width = page.evaluate("() => document.documentElement.scrollWidth")
            if check_links:
                _check_links(page, context, visit)
            yield visit
        finally:
            context.close()


@contextmanager
def launch() -> Iterator[Browser]:
    """Debian's Chromium under Playwright (headless; Playwright gives it a fresh temporary profile)."""
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield Browser(browser)
        finally:
            browser.close()


# --- page events -------------------------------------------------------------------------------------------


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _route(route, visit: Visit) -> None:
    url = route.request.url
    if is_allowed(url):
        route.continue_()
    else:
        visit.remote_requests.append(url)
        route.abort("blockedbyclient")


def _route_socket(socket, visit: Visit) -> None:
    if is_loopback(socket.url):
        socket.connect_to_server()
    else:
        visit.remote_requests.append(socket.url)
        socket.close()


def _console(message, visit: Visit) -> None:
    if message.type == "error":
        where = message.location.get("url") if message.location else None
        visit.console_errors.append(_one_line(message.text + (f" (at {where})" if where else "")))


def _request_failed(request, visit: Visit) -> None:
    if is_loopback(request.url):  # remote ones are recorded by the route, and aborted on purpose
        visit.failed_requests.append(f"{request.url}: {request.failure}")


def _response(response, visit: Visit) -> None:
    if response.status >= 400 and is_loopback(response.url):
        visit.failed_requests.append(f"{response.url}: HTTP {response.status}")


def _check_links(page, context, visit: Visit) -> None:
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    here, _ = urldefrag(page.url)
    for href in dict.fromkeys(hrefs):
        target, fragment = urldefrag(href)
        scheme = urlsplit(target).scheme
        if scheme not in ("http", "https"):
            continue  # mailto:, javascript:, data: … are no page to fetch
        if not is_loopback(target):
            visit.external_links.append(href)
            continue
        if target == here:
            # "#/route" and "#!/route" are a client-side router's (Swagger UI's), not an element's id.
            if fragment and not fragment.startswith(("/", "!")) and not page.evaluate(
                "f => !!(document.getElementById(f) || document.getElementsByName(f).length)", fragment
            ):
                visit.missing_anchors.append(fragment)
            continue
        if target not in visit.links:
            try:
                visit.links[target] = context.request.get(target, max_redirects=5).status
            except Exception as error:  # noqa: BLE001: recorded as the link's problem
                visit.links[target] = _one_line(str(error))


# --- servers under test ------------------------------------------------------------------------------------


def start_service(argv: Sequence[str], url: str, log_path: Path, env: dict | None = None,
                  ready_path: str = "/", timeout: float = 90.0) -> Service:
    """Run `argv` in a new session and wait until `url + ready_path` answers below 500; the process group is
    killed if it never does (and by `Service.stop`)."""
    return wait_until_ready(Service(spawn(argv, log_path, env), url, log_path), ready_path, timeout)
