"""Four people's journeys in a real browser, under the production CSP with htmx's eval off: an executive filters the
scorecard and drills into a KPI, an owner files a mitigation path, an admin builds and previews an escalation policy,
and a stranger from another organization is refused. Each leaves a screenshot under var/screenshots/."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from django.utils import timezone

from escalations.models import EscalationPolicy, MitigationPath, Task, Workstream
from scorecards.models import Kpi
from tests.conftest import Tenant
from tests.factories import PASSWORD, KpiFactory

expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect
pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class World:
    acme: Tenant
    globex: Tenant
    workstream: Workstream
    revenue: Kpi


@pytest.fixture
def world(tenant, stranger_tenant) -> World:
    """acme's scorecard with three KPIs in three states, and an open workstream on the owner's KPI, no path yet."""
    t = tenant
    Kpi.objects.filter(pk=t.kpi.pk).update(status="off_track")
    revenue = KpiFactory(organization=t.org, team=t.team, owner=t.member, key="sales.revenue", name="Revenue")
    churn = KpiFactory(organization=t.org, team=t.team, owner=t.member, key="cs.churn", name="Churn")
    Kpi.objects.filter(pk=revenue.pk).update(status="on_track")
    Kpi.objects.filter(pk=churn.pk).update(status="at_risk")
    t.scorecard.kpis.add(revenue, churn)
    ws = Workstream.objects.create(organization=t.org, kpi=t.kpi, severity="off_track", opened_at=timezone.now())
    return World(t, stranger_tenant, ws, revenue)


def test_an_executive_filters_the_scorecard_and_drills_into_a_kpi(session, world):
    s = session()
    s.login(world.acme.executive.user.email, PASSWORD)
    page = s.page
    page.goto(f"/o/acme/scorecards/{world.acme.scorecard.pk}/")
    rows = page.locator("#kpi-table tbody tr")
    expect(rows).to_have_count(3)

    page.get_by_label("Status", exact=True).select_option(label="Off track")  # htmx: change on the form, no eval
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Throughput")
    expect(page).to_have_url(re.compile(r"status=off_track"))  # hx-push-url: the filter is shareable

    page.get_by_label("Status", exact=True).select_option(label="Any status")
    expect(rows).to_have_count(3)
    page.get_by_label("Search", exact=True).press_sequentially("reven")  # htmx: keyup from the box, delayed
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Revenue")

    page.get_by_role("link", name="Revenue").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Revenue")
    expect(page).to_have_url(re.compile(rf"/o/acme/kpis/{world.revenue.pk}/$"))
    s.screenshot("executive-scorecard-kpi")
    s.assert_clean()


def test_an_owner_files_a_mitigation_path_with_two_actions(session, world):
    s = session()
    s.login(world.acme.lead.user.email, PASSWORD)  # the lead owns Throughput
    page = s.page
    page.goto(f"/o/acme/workstreams/{world.workstream.pk}/")
    form = page.locator("#file-path")
    form.get_by_label("Root cause").fill("The supplier's line stopped for two days.")
    form.get_by_label("Expected recovery").fill("2030-06-30")
    rows = form.locator(".action-row")
    expect(rows).to_have_count(2)
    form.get_by_role("button", name="+ Add action").click()  # htmx re-renders the form with a third row
    expect(rows).to_have_count(3)
    form.get_by_role("button", name="Remove action 3").click()  # ... and takes it away again
    expect(rows).to_have_count(2)
    for n, (what, who, due) in enumerate(
        [
            ("Move orders to the second supplier", "member", "2030-06-10"),
            ("Expedite the backlog", "lead", "2030-06-20"),
        ],
        start=1,
    ):
        row = rows.nth(n - 1)
        row.get_by_label(f"Action {n}", exact=True).fill(what)
        row.get_by_label("Owner", exact=True).select_option(label=getattr(world.acme, who).user.name)
        row.get_by_label("Due", exact=True).fill(due)
    form.get_by_role("button", name="File the path", exact=True).last.click()

    path = page.locator("#path")
    expect(path.locator(".action-item")).to_have_count(2)
    expect(path).to_contain_text("The supplier's line stopped for two days.")
    page.reload()  # in the workstream for good, not only in the swapped fragment
    expect(page.locator("#path .action-item")).to_have_count(2)
    expect(page.locator("#path")).to_contain_text("Expedite the backlog")
    filed = MitigationPath.objects.get(workstream=world.workstream)
    assert filed.filed_by == world.acme.lead.user and filed.actions.count() == 2
    s.screenshot("owner-mitigation-path")
    s.assert_clean()


def test_an_admin_builds_a_two_level_policy_and_previews_it(session, world):
    s = session()
    s.login(world.acme.admin.user.email, PASSWORD)
    page = s.page
    page.goto("/o/acme/escalation/new/")
    page.get_by_label("Name").fill("Supply chain")
    page.get_by_label("Key").fill("supply")
    page.get_by_label("Owner's time to file a mitigation path").fill("2d")
    page.get_by_label("An acknowledgement pauses escalation for").fill("4h")

    levels = page.locator("#levels li.level")
    if levels.count() == 0:
        page.get_by_role("button", name="+ Add a level").click()
    expect(levels).to_have_count(1)
    levels.nth(0).get_by_label("The lead of the KPI's team").check()
    levels.nth(0).get_by_label("Wait before the next level").fill("1d")
    page.get_by_role("button", name="+ Add a level").click()  # htmx: the levels re-render with a second one
    expect(levels).to_have_count(2)
    levels.nth(1).get_by_label("Every executive").check()
    levels.nth(1).get_by_label("Wait before the next level").fill("2d")

    page.get_by_label("KPI", exact=True).select_option(value=str(world.acme.kpi.pk))
    page.get_by_role("button", name="Preview", exact=True).click()  # htmx: the unsaved draft's timeline
    preview = page.locator("#preview")
    expect(preview).to_contain_text("Throughput")
    expect(preview.locator(".plan-step")).not_to_have_count(0)
    expect(preview).to_contain_text(world.acme.lead.user.name)  # level 1: the team's lead
    expect(preview).to_contain_text(world.acme.executive.user.name)  # level 2: every executive
    s.screenshot("admin-policy-preview")

    page.get_by_role("button", name="Create policy").click()
    expect(page.get_by_text("Supply chain").first).to_be_visible()
    policy = EscalationPolicy.objects.get(organization=world.acme.org, key="supply")
    assert [lv.targets for lv in policy.levels.order_by("position")] == [["team_lead"], ["role:executive"]]
    s.assert_clean()


def test_a_stranger_from_another_organization_is_refused(session, world):
    s = session()
    s.login(world.globex.admin.user.email, PASSWORD)
    page = s.page
    expect(page).to_have_url(re.compile(r"/o/globex/$"))
    for url in [
        "/o/acme/",
        f"/o/acme/scorecards/{world.acme.scorecard.pk}/",
        f"/o/acme/kpis/{world.acme.kpi.pk}/",
        f"/o/acme/workstreams/{world.workstream.pk}/",
        # globex's own pages with acme's ids: the organization is the stranger's, the objects are not
        f"/o/globex/kpis/{world.acme.kpi.pk}/",
        f"/o/globex/workstreams/{world.workstream.pk}/",
    ]:
        response = page.goto(url)
        assert response.status == 404, url
        expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
        expect(page.locator("body")).not_to_contain_text("Throughput")
    s.screenshot("stranger-refused")
    s.assert_clean(allow=("404",))  # the refusals themselves are the only errors the console may show


def test_a_password_guesser_is_locked_out_with_a_clear_message(session, world):
    s = session()
    page = s.page
    page.goto(f"/login/?email={world.acme.member.user.email}")
    for _ in range(5):
        page.get_by_label("Email").fill(world.acme.member.user.email)
        page.get_by_label("Password").fill("not-the-password")
        page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Too many failed attempts")
    page.get_by_label("Password").fill(PASSWORD)  # the right one now changes nothing until the cool-off ends
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("paused for 15 minutes")
    expect(page).to_have_url(re.compile(r"/login/$"))
    s.screenshot("login-locked-out")
    s.assert_clean(allow=("429",))


def test_the_api_docs_work_under_the_policy(session, world):
    """Swagger UI is served from ninja's static files: it renders without any relaxation of the CSP."""
    s = session()
    s.login(world.acme.admin.user.email, PASSWORD)
    s.page.goto("/api/v1/docs")
    expect(s.page.locator(".swagger-ui .opblock").first).to_be_visible()
    s.assert_clean()


def test_an_executive_approves_a_path_in_place_in_the_decision_queue(session, world):
    t = world.acme
    path = MitigationPath.objects.create(
        organization=t.org,
        workstream=world.workstream,
        root_cause="The supplier's line stopped for two days.",
        expected_recovery=date(2030, 6, 30),
        filed_by=t.lead.user,
    )
    Task.objects.create(
        organization=t.org,
        kind="escalation",
        assignee=t.executive,
        kpi=t.kpi,
        workstream=world.workstream,
        level=2,
        escalation_pass=1,
        due_at=timezone.now() + timedelta(days=1),
        dedup_key="executive-decision",
    )
    s = session()
    s.login(t.executive.user.email, PASSWORD)
    page = s.page
    page.goto("/o/acme/inbox/")
    row = page.locator(f"#decision-k{t.kpi.pk}")
    expect(row).to_contain_text(f"Approve or reject {t.lead.user.name}'s mitigation path.")
    expect(row.locator(".status")).to_contain_text("Off track")
    expect(row).to_contain_text("/ target")
    expect(row).not_to_contain_text("pass 1")  # levels and passes are detail, folded away
    row.get_by_label(f"Your reason, on the record, for {t.kpi.name}").fill("Sound plan, dates are credible.")
    row.get_by_role("button", name="Approve", exact=True).click()
    expect(row).to_contain_text("Mitigation path approved: escalation stops.")
    expect(row).to_contain_text("Nothing more is asked of you here.")
    expect(page).to_have_url(re.compile(r"/o/acme/inbox/$"))  # decided in place, no page change
    path.refresh_from_db()
    assert path.state == "approved" and path.reviewed_by == t.executive.user
    s.screenshot("executive-decision-queue")
    s.assert_clean()


def test_the_owner_sees_the_overdue_path_first_on_the_workstream(session, world):
    t = world.acme
    Task.objects.create(
        organization=t.org,
        kind="mitigation",
        assignee=t.lead,
        kpi=t.kpi,
        workstream=world.workstream,
        due_at=timezone.now() - timedelta(days=13),
        dedup_key="owner-filing",
    )
    s = session()
    s.login(t.lead.user.email, PASSWORD)  # the lead owns Throughput
    page = s.page
    page.goto(f"/o/acme/workstreams/{world.workstream.pk}/")
    lead = page.locator("#next")
    expect(lead).to_contain_text(f"{t.lead.user.name} must file the mitigation path · 13 d overdue")
    expect(lead.locator(".status")).to_have_text("None filed")
    top = lead.bounding_box()["y"]
    for later in ("#file-path", "#tasks", "#timeline"):
        assert page.locator(later).bounding_box()["y"] > top, later
    lead.get_by_role("link", name="File the path").click()
    expect(page.locator("#file-path").get_by_label("Root cause")).to_be_in_viewport()
    s.screenshot("owner-workstream-overdue")
    s.assert_clean()


def test_the_scorecard_has_one_line_per_kpi_at_1280_px(session, world):
    t = world.acme
    Kpi.objects.filter(pk=world.revenue.pk).update(name="Revenue from new enterprise customers per quarter")
    s = session(width=1280)
    s.login(t.executive.user.email, PASSWORD)
    page = s.page
    page.goto(f"/o/acme/scorecards/{t.scorecard.pk}/")
    rows = page.locator("#kpi-table tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator(".ws-chip")).to_have_text("No path yet")  # Throughput's open workstream, in words

    def heights() -> list[float]:
        return [rows.nth(i).bounding_box()["height"] for i in range(rows.count())]

    comfortable = heights()
    assert max(comfortable) < 48 and max(comfortable) - min(comfortable) < 1, comfortable  # one line each
    wrap = page.locator("#kpi-table .table-wrap")
    assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth")  # nothing hidden to the right
    expect(page.get_by_role("link", name=re.compile("^Revenue from new"))).to_have_attribute(
        "title", re.compile(r"key sales\.revenue")
    )
    page.get_by_role("link", name="Compact").click()
    expect(page.locator("table.density-compact")).to_have_count(1)
    assert max(heights()) < min(comfortable) - 4
    page.reload()  # remembered for this person
    expect(page.locator("table.density-compact")).to_have_count(1)
    s.screenshot("scorecard-1280")
    s.assert_clean()


def test_on_a_phone_the_navigation_folds_and_the_scorecard_keeps_value_target_and_trend(session, world):
    t = world.acme
    Kpi.objects.filter(pk=world.revenue.pk).update(last_value=1234.5, target_value=1500)
    s = session(width=390)
    s.login(t.executive.user.email, PASSWORD)
    page = s.page
    page.goto(f"/o/acme/scorecards/{t.scorecard.pk}/")
    nav = page.get_by_role("navigation", name="Organization")
    expect(nav).to_be_hidden()  # folded: the first screen is the page, not fifteen links
    menu = page.locator("label[for=nav-toggle]")
    expect(menu).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_be_in_viewport()
    expect(page.locator(".tabs-wide")).to_be_hidden()
    expect(page.get_by_label("Scorecard", exact=True)).to_be_visible()  # the tabs as a select

    row = page.locator("#kpi-table tbody tr", has_text="Revenue")
    for part in (row.locator(".status"), row.locator(".trend"), row.locator(".figures")):
        expect(part).to_be_visible()
        box = part.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box  # on screen, not scrolled away
    expect(row.locator(".figures")).to_contain_text("1,234 / 1,500 leads")

    menu.click()
    expect(nav).to_be_visible()
    expect(nav.get_by_role("link", name=re.compile("^Inbox"))).to_be_visible()
    for group in ("My work", "Scorecards", "Workstreams", "Reviews", "Administration"):
        expect(nav.get_by_text(group, exact=True)).to_be_visible()
    page.get_by_label("Scorecard", exact=True).select_option(label="All KPIs")
    expect(page).to_have_url(re.compile(r"/o/acme/kpis/$"))
    s.screenshot("phone-scorecard")
    s.assert_clean()
