"""A manual value's journey in a real browser, under the production CSP with htmx's eval off: the updater enters the
month's value on the KPI page, the approver confirms it from the inbox. Screenshots under var/screenshots/."""

from __future__ import annotations

import pytest
from django.utils import timezone

from escalations.models import Task
from scorecards import manual as calendar
from scorecards.models import Kpi, ManualValue, Measurement, Period
from scorecards.services import manual_kpi_set
from tests.factories import PASSWORD

expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect
pytestmark = pytest.mark.django_db(transaction=True)


def test_an_updater_enters_a_value_and_the_approver_confirms_it_in_the_inbox(session, tenant):
    t = tenant
    Kpi.objects.filter(pk=t.kpi.pk).update(data_source=None)
    manual_kpi_set(kpi=t.kpi, actor=t.admin.user, period=Period.MONTHLY, updaters=[t.member], approver=t.executive)
    period = calendar.due_period(Period.MONTHLY, timezone.localdate(timezone.now(), t.org.tzinfo))
    label = calendar.period_label(Period.MONTHLY, period)

    s = session()
    s.login(t.member.user.email, PASSWORD)
    page = s.page
    page.goto(f"/o/{t.org.slug}/kpis/{t.kpi.pk}/")
    panel = page.locator("#kpi-manual")
    expect(panel).to_contain_text("No value entered yet")  # loaded by htmx
    panel.get_by_text("Enter a value").click()
    panel.get_by_label("Period").select_option(period.isoformat())
    panel.get_by_label("Value").fill("1180")
    panel.get_by_label("Note").fill("From the monthly board pack")
    panel.get_by_label("Evidence link").fill("https://docs.acme.test/board/november")
    panel.get_by_role("button", name="Enter for confirmation").click()
    expect(panel).to_contain_text("entered; it counts once")
    expect(panel.locator("tbody tr")).to_have_count(1)
    expect(panel.locator("tbody tr").first).to_contain_text("Waiting for confirmation")
    expect(panel.get_by_role("button", name="Confirm")).to_have_count(0)  # never their own value
    s.screenshot("manual-value-entered")
    s.assert_clean()

    approver = session()
    approver.login(t.executive.user.email, PASSWORD)
    inbox = approver.page
    inbox.goto(f"/o/{t.org.slug}/inbox/")
    row = inbox.locator(".manual-task")
    expect(row).to_contain_text("1,180 leads")
    expect(row).to_contain_text("From the monthly board pack")
    approver.screenshot("manual-value-inbox")
    row.get_by_role("button", name="Confirm").click()  # htmx: the row is replaced in place
    expect(inbox.locator(".queue-list")).to_contain_text("Confirmed: the value counts now")
    approver.assert_clean()

    value = ManualValue.objects.get(kpi=t.kpi)
    assert (value.state, value.decided_by) == (ManualValue.State.CONFIRMED, t.executive.user)
    assert Measurement.objects.get(kpi=t.kpi).value == 1180
    assert not Task.objects.filter(kind=Task.Kind.MANUAL_APPROVAL, state="open").exists()

    page.reload()
    expect(page.locator("#kpi-manual tbody tr").first).to_contain_text("Confirmed")
    expect(page.locator("#kpi-manual")).to_contain_text(label)
    s.screenshot("manual-value-confirmed")
