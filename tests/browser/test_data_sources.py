"""An admin's journey in a real browser: a new data source for a published spreadsheet, tested in place (the dry
pull's result swapped in by htmx under the production CSP), then created. Leaves var/screenshots/data_source*.png."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scorecards.models import DataSource, Measurement
from tests.factories import PASSWORD

expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect
pytestmark = pytest.mark.django_db(transaction=True)

SHEET = b"Week,Throughput\n2026-11-23,41\n2026-11-24,44\n"


@pytest.fixture
def published_sheet(settings):
    """A published CSV on loopback, as Google Sheets serves one."""
    settings.PULL_ALLOW_PRIVATE_NETWORKS = True

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(SHEET)))
            self.end_headers()
            self.wfile.write(SHEET)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pub?output=csv"
    server.shutdown()
    server.server_close()


def test_an_admin_creates_a_spreadsheet_source_and_tests_it(session, tenant, published_sheet):
    s = session()
    s.login(tenant.admin.user.email, PASSWORD)
    page = s.page
    page.goto(f"/o/{tenant.org.slug}/data-sources/")
    page.get_by_role("link", name="New data source").click()
    page.get_by_label("Key").fill("targets")
    page.get_by_label("Kind").select_option(label="Spreadsheet (CSV/TSV link)")
    page.get_by_label("Settings").fill(
        f"url: {published_sheet}\npulls:\n  - kpi: {tenant.kpi.key}\n    at: Week\n    value: Throughput\n"
    )
    page.get_by_role("button", name="Test connection").click()
    result = page.locator("#dry-pull")
    expect(result).to_contain_text("Connected: 2 rows would be stored. Nothing was stored.")
    expect(result.locator("tbody tr")).to_have_count(2)
    s.screenshot("data_source_form")
    assert not DataSource.objects.filter(key="targets").exists() and not Measurement.objects.exists()

    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/data-sources/\d+/$"))
    expect(page.get_by_role("heading", name="targets")).to_be_visible()
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#dry-pull")).to_contain_text("Connected: 2 rows would be stored.")
    s.screenshot("data_source_page")
    page.get_by_role("link", name="Data sources").first.click()
    expect(page.get_by_role("heading", name="targets")).to_be_visible()
    s.screenshot("data_sources")
    s.assert_clean()
    assert DataSource.objects.get(key="targets").kind == "spreadsheet"
