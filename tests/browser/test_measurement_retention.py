"""An admin limits how long raw measurements are kept, on the organization's settings page."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.factories import PASSWORD


def test_an_admin_sets_how_long_raw_measurements_are_kept(session, tenant):
    for width in (1280, 390):
        s = session(width=width)
        s.login(tenant.admin.user.email, PASSWORD)
        page = s.page
        page.goto(f"/o/{tenant.org.slug}/settings/")
        page.get_by_label("Keep raw measurements for (days)").fill("90")
        page.get_by_role("button", name="Save settings").click()
        expect(page.get_by_text("Settings saved.")).to_be_visible()
        page.goto(f"/o/{tenant.org.slug}/settings/")
        expect(page.get_by_label("Keep raw measurements for (days)")).to_have_value("90")
        s.screenshot(f"organization-settings-retention-{width}")
        s.assert_clean()
        s.close()
    tenant.org.refresh_from_db()
    assert tenant.org.raw_measurement_days == 90
