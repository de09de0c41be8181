"""A board member opens a shared scorecard, and a member mentions a colleague in a comment, in a real browser under
the production CSP. Each leaves a screenshot under var/screenshots/."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from escalations.collaboration.sharing import share_link_create
from escalations.models import Notification
from governance import tenancy
from scorecards.models import Kpi, Measurement
from tests.factories import PASSWORD, KpiFactory

expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_board_member_reads_the_shared_scorecard_and_can_do_nothing_else(session, tenant):
    t = tenant
    revenue = KpiFactory(organization=t.org, team=t.team, owner=t.member, key="sales.revenue", name="Revenue")
    Kpi.objects.filter(pk=t.kpi.pk).update(status="off_track", last_value=41, target_value=60)
    Kpi.objects.filter(pk=revenue.pk).update(status="on_track", last_value=1.2e6, target_value=1e6)
    t.scorecard.kpis.add(t.kpi, revenue)
    now = timezone.now()
    Measurement.objects.bulk_create(
        Measurement(organization=t.org, kpi=k, at=now - timedelta(days=d), value=base + d % 5 * step)
        for k, base, step in ((t.kpi, 40, 3), (revenue, 1.1e6, 2e4))
        for d in range(1, 29)
    )
    with tenancy.scope(organization=t.org.pk):
        _, token = share_link_create(by=t.executive, scorecard=t.scorecard, label="Board", valid_for=timedelta(days=7))
    s = session()
    s.page.goto(f"/share/{token}/")
    expect(s.page.get_by_role("heading", name=t.scorecard.name)).to_be_visible()
    expect(s.page.locator("tbody tr")).to_have_count(2)
    expect(s.page.locator("svg").first).to_be_visible()
    assert s.page.locator("form, [hx-post], nav, a[href^='/o/']").count() == 0
    s.screenshot("share-scorecard")
    with tenancy.scope(organization=t.org.pk):
        _, locked = share_link_create(
            by=t.executive, scorecard=t.scorecard, label="Board", valid_for=timedelta(days=7), passcode="board-2026"
        )
    s.page.goto(f"/share/{locked}/")
    s.page.get_by_label("Passcode").fill("guess")
    s.page.get_by_role("button", name="Open").click()
    expect(s.page.get_by_text("That passcode is not right")).to_be_visible()
    s.screenshot("share-passcode")
    s.page.get_by_label("Passcode").fill("board-2026")
    s.page.get_by_role("button", name="Open").click()
    expect(s.page.locator("tbody tr")).to_have_count(2)
    s.assert_clean(allow=("status of 403",))


def test_a_member_mentions_a_colleague_with_the_autocompletion(session, tenant):
    t = tenant
    s = session()
    s.login(t.member.user.email, PASSWORD)
    s.page.goto(f"/o/{t.org.slug}/kpis/{t.kpi.pk}/")
    box = s.page.get_by_role("textbox", name="Comment")
    box.fill("")
    box.press_sequentially("Could you check this, @lea", delay=20)
    s.page.locator(".mention-pick", has_text=t.lead.user.email).click()
    expect(box).to_have_value(f"Could you check this, @{t.lead.user.email} ")
    box.press_sequentially("**today**?")
    s.page.get_by_role("button", name="Comment", exact=True).click()
    expect(s.page.locator(".comment-body strong")).to_have_text("today")
    assert Notification.objects.filter(recipient=t.lead, kind="mention").exists()
    s.screenshot("kpi-comments")
    s.page.get_by_role("link", name="Edit").click()
    expect(s.page.get_by_role("heading", name="Edit your comment")).to_be_visible()
    s.screenshot("comment-edit")
    decision = t.review_session.decisions.get()
    s.page.goto(f"/o/{t.org.slug}/decisions/{decision.pk}/")
    expect(s.page.get_by_role("textbox", name="Comment")).to_be_visible()
    s.screenshot("decision-discussion")
    s.assert_clean()


def test_an_executive_shares_a_scorecard_revokes_it_and_the_office_screen_rotates(session, tenant):
    t = tenant
    t.scorecard.kpis.add(t.kpi)
    s = session()
    s.login(t.executive.user.email, PASSWORD)
    s.page.goto(f"/o/{t.org.slug}/share-links/")
    s.page.get_by_label("Scorecard", exact=True).select_option(label=t.scorecard.name)
    s.page.get_by_label("Label").fill("Board, March meeting")
    s.page.get_by_role("button", name="Create link").click()
    url = s.page.locator(".share-url").input_value()
    expect(s.page.locator("tbody tr")).to_have_count(1)
    s.screenshot("share-links")
    s.page.goto(f"/o/{t.org.slug}/tv/")
    expect(s.page.get_by_role("heading", name=t.scorecard.name)).to_be_visible()
    s.screenshot("tv-mode")
    s.page.goto(f"/o/{t.org.slug}/share-links/")
    s.page.get_by_role("button", name="Revoke").click()
    expect(s.page.get_by_text("Revoked", exact=False).first).to_be_visible()
    s.page.goto(url)
    expect(s.page.get_by_role("heading", name="This link does not open")).to_be_visible()
    s.screenshot("share-refused")
    s.assert_clean(allow=("status of 410",))
