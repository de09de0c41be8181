"""Browser journeys: Playwright for Python driving Debian's Chromium against pytest-django's live server.

Playwright is only the Python package: it launches /usr/bin/chromium and never downloads a browser. axe-core comes
from npm (package.json, `make test` installs it). Where either is missing the tests are skipped with the reason,
except on CI, where a missing browser is a broken build, not a skip.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "var" / "screenshots"
# As root and on a closed network: no sandbox, and none of Chromium's own calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Reports what the page refused or could not do: CSP violations and htmx's refusals to eval, as console errors,
# so that one listener on the page sees them across navigations.
WATCH_SCRIPT = """
document.addEventListener('securitypolicyviolation', (e) =>
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`));
document.addEventListener('htmx:evalDisallowedError', () => console.error('htmx wanted eval'));
document.addEventListener('htmx:responseError', (e) => console.error(`htmx response ${e.detail.xhr.status}`));
"""


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI installs it (.ci/run, make test)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        _missing("Debian's Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (make .venv/bin/.installed)")
    # Playwright's sync API keeps an event loop running in this thread; Django refuses ORM calls from a thread
    # with a running loop unless told that it is safe, which it is here: the loop only drives the browser.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    manager = sync_playwright().start()
    try:
        browser = manager.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    finally:
        manager.stop()  # ends the loop before the rest of the suite runs
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Session:
    """One person's browser tab, with the console errors it collected."""

    def __init__(self, browser, base_url: str, *, width: int = 1280):
        self.context = browser.new_context(base_url=base_url, viewport={"width": width, "height": 900})
        self.context.set_default_timeout(10_000)
        self.context.add_init_script(WATCH_SCRIPT)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def login(self, email: str, password: str) -> None:
        page = self.page
        page.goto("/login/")
        page.get_by_label("Email").fill(email)
        page.get_by_role("button", name="Continue").click()  # the email first: single sign-on may take over
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r"/o/[\w-]+/$"))

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self, *, allow: tuple[str, ...] = ()) -> None:
        """No CSP violation, no eval htmx wanted, no script error, no failed request on any page visited."""
        errors = [e for e in self.errors if not any(a in e for a in allow)]
        assert not errors, errors

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def session(browser, live_server) -> Iterator:
    sessions: list[Session] = []

    def open_session(**kwargs) -> Session:
        s = Session(browser, live_server.url, **kwargs)
        sessions.append(s)
        return s

    yield open_session
    for s in sessions:
        s.close()


@pytest.fixture(scope="package")
def axe_source() -> str:
    if not AXE.exists():
        _missing("axe-core is not installed: run `npm ci` (make test does)")
    return AXE.read_text()
