"""Scheduled reports and the review's calendar in the browser: an executive subscribes the board to the Monday
deck, sees it listed, and puts the running review on the attendees' calendars."""

from __future__ import annotations

import pytest

from escalations.decisions import review_sessions
from escalations.models import ReportSubscription, ReviewSession
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)
expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect


@pytest.mark.parametrize("width", [1280, 390])
def test_an_executive_schedules_the_board_deck_and_the_review(session, tenant, width):
    s = session(width=width)
    s.login(tenant.executive.user.email, PASSWORD)
    page = s.page
    page.goto(f"/o/{tenant.org.slug}/reports/")
    expect(page.get_by_text("No scheduled report yet")).to_be_visible()
    page.get_by_role("link", name="New scheduled report").click()
    page.get_by_label("Name").fill("Board deck")
    page.get_by_label("Format").select_option("pptx")
    page.get_by_label(tenant.member.user.name, exact=False).check()
    page.get_by_label("Other addresses").fill("chair@board.test")
    s.screenshot(f"reports-form-{width}")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("link", name="Board deck")).to_be_visible()
    expect(page.get_by_text("Every Monday at 08:00")).to_be_visible()
    s.screenshot(f"reports-list-{width}")
    assert ReportSubscription.objects.get().emails == ["chair@board.test"]

    review = review_sessions.review_session_start(org=tenant.org, by=tenant.executive, title="January steering")
    page.goto(f"/o/{tenant.org.slug}/review/sessions/{review.pk}/")
    page.get_by_text("Put on calendars").click()
    page.get_by_label("Meets on").fill("2030-01-07T09:00")
    s.screenshot(f"review-schedule-{width}")
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.get_by_text("Meeting time saved")).to_be_visible()
    assert ReviewSession.objects.get(pk=review.pk).scheduled_for is not None
    s.assert_clean()
