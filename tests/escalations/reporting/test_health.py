"""The governance health page: each weekly figure on known data, calendar weeks across DST, access, query count."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from escalations.models import Decision, MitigationAction, MitigationPath, ReviewSession, Task, Workstream
from escalations.reporting.health import PromiseRecord, calendar_weeks, health_report
from governance.models import Membership
from scorecards.models import Kpi, StatusChange
from tests.conftest import Tenant
from tests.escalations.factories import MitigationPathFactory, WorkstreamFactory
from tests.factories import KpiFactory, MembershipFactory, TeamFactory

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 4, 12, 0, tzinfo=UTC)  # a Wednesday; the weeks: 12, 19 (DST ends on the 25th), 26 Oct, 2 Nov
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)
# Session, user, the memberships (the org switcher's too), the seven metrics (promises by owner included), nav counts.
PAGE_QUERIES = 11


def local(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=BERLIN)


def metric(org, key: str, weeks: int = 4):
    period, metrics = health_report(org=org, weeks=weeks, now=NOW)
    return period, next(m for m in metrics if m.key == key)


def kpi(t: Tenant, name: str, team=None, created: datetime = LONG_AGO, **fields) -> Kpi:
    k = KpiFactory(organization=t.org, team=team or t.team, owner=t.lead, name=name, **fields)
    Kpi.objects.filter(pk=k.pk).update(created_at=created)
    k.refresh_from_db()
    return k


def change(k: Kpi, at: datetime, new: str, old: str = "on_track") -> None:
    StatusChange.objects.create(organization=k.organization, kpi=k, old=old, new=new, changed_at=at)


@pytest.fixture
def acme(tenant, stranger_tenant):
    Kpi.objects.filter(organization__in=[tenant.org, stranger_tenant.org]).update(created_at=LONG_AGO)
    return tenant


def test_weeks_are_the_organizations_calendar_weeks_and_the_dst_week_lasts_169_hours(acme):
    weeks = calendar_weeks(org=acme.org, count=4, now=NOW)
    assert [w.label for w in weeks] == ["12 Oct", "19 Oct", "26 Oct", "2 Nov"]
    assert weeks[0].start == datetime(2026, 10, 11, 22, tzinfo=UTC)  # Monday 00:00 CEST
    assert weeks[2].start == datetime(2026, 10, 25, 23, tzinfo=UTC)  # Monday 00:00 CET
    assert [(w.end - w.start) / timedelta(hours=1) for w in weeks[:3]] == [168, 169, 168]
    assert weeks[-1].in_progress and weeks[-1].end == NOW and not weeks[-2].in_progress


def test_median_time_from_breach_to_the_first_approved_path_by_week_of_approval(acme):
    def episode(name: str, opened: datetime, *approvals: datetime, kind=Workstream.Kind.MITIGATION, state="approved"):
        ws = WorkstreamFactory(kpi=kpi(acme, name), kind=kind, opened_at=opened)
        for at in approvals:
            MitigationPathFactory(
                workstream=ws,
                root_cause="Cause",
                filed_by=acme.lead.user,
                filed_at=opened,
                state=state,
                reviewed_by=acme.executive.user,
                reviewed_at=at,
            )
        return ws

    episode("A", local(10, 13), local(10, 14))  # 1 day, week of 12 Oct
    b = episode("B", local(10, 12), local(10, 15))  # 3 days, week of 12 Oct
    MitigationPathFactory(  # rejected first: not an approval
        workstream=b,
        root_cause="Vague",
        filed_by=acme.lead.user,
        state="rejected",
        reviewed_at=local(10, 13),
    )
    # Opened in summer time, approved in winter time: 7 days and the hour the clocks went back.
    episode("C", local(10, 20), local(10, 27), local(10, 30))  # the second approval does not count
    episode("D", local(10, 20), local(10, 21), kind=Workstream.Kind.DATA_FRESHNESS)  # not a breach
    episode("E", local(9, 1), local(10, 5))  # approved before the period
    episode("F", local(10, 20), local(10, 22), state="submitted")  # not approved
    _, m = metric(acme.org, "time_to_approval")
    assert m.values[0] == 2.0 and m.values[1] is None and m.values[3] is None
    assert m.values[2] == pytest.approx(7 + 1 / 24)
    assert m.cells == ["2.0 days (2)", "—", "7.0 days (1)", "—"]
    assert m.headline == "3.0 days" and "3 approvals" in m.headline_label


def test_escalations_are_counted_per_team_and_week(acme, stranger_tenant):
    finance = TeamFactory(organization=acme.org, key="fin", name="Finance")
    ops_kpi, fin_kpi = acme.kpi, kpi(acme, "Margin", team=finance)

    def task(k: Kpi, at: datetime, kind=Task.Kind.ESCALATION, org=None) -> None:
        org = org or acme.org
        assignee = Membership.objects.filter(organization=org).first()
        Task.objects.create(
            organization=org,
            kind=kind,
            assignee=assignee,
            kpi=k,
            due_at=at,
            created_at=at,
            dedup_key=f"t{Task.objects.count()}",
        )

    task(ops_kpi, local(10, 12, 9)), task(ops_kpi, local(10, 18, 23))  # week of 12 Oct, up to Sunday night
    for day in (19, 20, 21, 25):
        task(fin_kpi, local(10, day))
    task(ops_kpi, local(11, 3))
    task(ops_kpi, local(10, 5))  # before the period
    task(ops_kpi, local(10, 27), kind=Task.Kind.MITIGATION)  # not an escalation
    task(stranger_tenant.kpi, local(10, 27), org=stranger_tenant.org)  # another organization
    _, m = metric(acme.org, "escalations")
    assert [(s.name, s.values) for s in m.breakdown] == [("Finance", [0, 4, 0, 0]), ("Operations", [2, 0, 0, 1])]
    assert m.values == [2, 4, 0, 1] and m.headline == "7"


def test_the_share_of_stale_kpis_at_each_weeks_end_comes_from_the_status_history(acme, stranger_tenant):
    k1, k2, k3 = kpi(acme, "K1"), kpi(acme, "K2"), kpi(acme, "K3")
    change(k1, local(10, 5), "on_track", old="no_data")
    change(k1, local(10, 14), "stale")
    change(k1, local(10, 28), "on_track", old="stale")
    change(k2, local(10, 20), "stale")
    change(k3, local(10, 5), "on_track", old="no_data")
    change(k3, local(11, 3), "stale")
    k4 = kpi(acme, "K4", created=local(10, 27, 9))  # tracked from the week of 26 Oct
    change(k4, local(10, 27), "stale", old="no_data")
    k5 = kpi(acme, "K5", archived_at=local(10, 21))  # archived during the week of 19 Oct
    change(k5, local(10, 13), "stale")
    stale_stranger = kpi(stranger_tenant, "Elsewhere")
    change(stale_stranger, local(10, 1), "stale")
    # Tracked: the tenant's KPI (no data), K1, K2, K3, K5 | K1, K2, K3 and the tenant's | + K4 | the same five.
    _, m = metric(acme.org, "stale_share")
    assert m.cells == ["40% (2 of 5)", "50% (2 of 4)", "40% (2 of 5)", "60% (3 of 5)"]
    assert m.headline == "60%" and m.tone == "bad"


def test_overdue_actions_are_counted_at_each_weeks_end_in_the_organizations_calendar(acme):
    approved_on_13th = local(10, 13)

    def path(name: str, state="approved", reviewed=approved_on_13th, resolved=None) -> MitigationPath:
        ws = WorkstreamFactory(kpi=kpi(acme, name), severity="at_risk", opened_at=local(10, 12), resolved_at=resolved)
        return MitigationPathFactory(
            workstream=ws,
            root_cause="Cause",
            filed_by=acme.lead.user,
            state=state,
            reviewed_at=reviewed if state != "submitted" else None,
        )

    def action(p: MitigationPath, due: date, done: datetime | None = None) -> None:
        MitigationAction.objects.create(
            organization=acme.org, path=p, description="Do it", owner=acme.member, due=due, done_at=done
        )

    action(path("A"), date(2026, 10, 14), done=local(10, 28))  # overdue from 15 Oct until done on the 28th
    action(path("B", resolved=local(11, 3)), date(2026, 10, 25))  # due Sunday: overdue from Monday 00:00 local
    action(path("C", reviewed=local(11, 1)), date(2026, 10, 30))  # approved after its due date
    action(path("D", state="submitted"), date(2026, 10, 10))  # a path awaiting review: its dates are proposals
    action(path("E", state="rejected"), date(2026, 10, 10))
    _, m = metric(acme.org, "overdue_actions")
    assert m.values == [1, 2, 2, 1] and m.headline == "1"


def test_decisions_per_review_counts_the_sessions_closed_each_week(acme, stranger_tenant):
    def review(t: Tenant, closed: datetime | None, decisions: int) -> None:
        session = ReviewSession.objects.create(
            organization=t.org, title="Review", started_by=t.executive.user, started_at=local(10, 1), closed_at=closed
        )
        for _ in range(decisions):
            Decision.objects.create(
                organization=t.org,
                kind=Decision.Kind.RISK_ACCEPTED,
                kpi=t.kpi,
                session=session,
                decided_by=t.executive.user,
                reason="Seasonal",
                kpi_status="at_risk",
            )

    review(acme, local(10, 13), 3)
    review(acme, local(10, 16), 0)  # a review that decided nothing counts, as a zero
    review(acme, local(10, 27), 2)
    review(acme, None, 5)  # still open: not yet a review that happened
    review(stranger_tenant, local(10, 27), 9)
    _, m = metric(acme.org, "decisions_per_review")
    assert m.values == [1.5, None, 2, None]
    assert m.cells == ["1.5 (2 reviews)", "—", "2.0 (1 review)", "—"]
    assert (m.headline, m.tone) == ("1.7", "ok")


def test_the_page_shows_every_metric_with_a_chart_and_its_numbers(acme):
    change(acme.kpi, local(10, 20), "stale")
    with time_machine.travel(NOW, tick=False):
        response = acme.client(acme.executive).get(
            reverse("escalations:governance_health", args=[acme.org.slug]) + "?weeks=4"
        )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('role="img"') == 1  # the stale share; the metrics with nothing to chart say so instead
    assert "No mitigation path was approved in these weeks." in html and "Nothing was escalated" in html
    assert "<desc>week of 12 Oct: 0% (0 of 1); week of 19 Oct: 100% (1 of 1)" in html
    assert html.count('<tr><th scope="row" class="nowrap">') == 4  # the week-by-week table, 4 weeks
    assert 'aria-current="page">4 weeks' in html


@pytest.mark.parametrize(("query", "rows"), [("", 12), ("?weeks=26", 26), ("?weeks=7", 12), ("?weeks=x", 12)])
def test_the_period_is_4_12_or_26_weeks(acme, query, rows):
    with time_machine.travel(NOW, tick=False):
        html = (
            acme.client(acme.admin).get(reverse("escalations:governance_health", args=[acme.org.slug]) + query).content
        )
    assert html.decode().count('<tr><th scope="row" class="nowrap">') == rows


def test_executives_and_admins_see_it_members_do_not_and_strangers_get_404(acme, stranger_tenant):
    url = reverse("escalations:governance_health", args=[acme.org.slug])
    assert acme.client(acme.executive).get(url).status_code == 200
    assert acme.client(acme.admin).get(url).status_code == 200
    assert acme.client(acme.member).get(url).status_code == 403
    assert acme.client(acme.lead).get(url).status_code == 403
    assert stranger_tenant.client(stranger_tenant.executive).get(url).status_code == 404
    assert stranger_tenant.client(stranger_tenant.admin).get(url).status_code == 404


def test_the_navigation_links_it_for_executives_only(acme):
    url = reverse("escalations:governance_health", args=[acme.org.slug])
    overview = reverse("scorecards:overview", args=[acme.org.slug])
    assert url in acme.client(acme.executive).get(overview).content.decode()
    assert url not in acme.client(acme.member).get(overview).content.decode()


def test_a_strangers_data_never_shows(acme, stranger_tenant):
    change(stranger_tenant.kpi, local(10, 20), "stale")
    with time_machine.travel(NOW, tick=False):
        html = (
            acme.client(acme.executive)
            .get(reverse("escalations:governance_health", args=[acme.org.slug]))
            .content.decode()
        )
    assert "% (1 of 1)" not in html and "0% (0 of 1)" in html and "Globex" not in html


def test_the_page_reads_a_constant_number_of_queries(acme, django_assert_max_num_queries):
    url = reverse("escalations:governance_health", args=[acme.org.slug])
    client = acme.client(acme.executive)

    def count(query: str) -> int:
        with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as queries:
            assert client.get(url + query).status_code == 200
        return len(queries)

    small = count("?weeks=4")
    for i in range(5):  # more KPIs, teams, escalations and history
        team = TeamFactory(organization=acme.org, name=f"Team {i}")
        k = kpi(acme, f"More {i}", team=team)
        change(k, local(10, 14 + i), "stale")
        Task.objects.create(
            organization=acme.org,
            kind=Task.Kind.ESCALATION,
            assignee=acme.executive,
            kpi=k,
            due_at=local(10, 20),
            created_at=local(10, 20 + i),
            dedup_key=f"more{i}",
        )
    assert count("?weeks=26") == count("?weeks=4") == small
    with time_machine.travel(NOW, tick=False), django_assert_max_num_queries(PAGE_QUERIES):
        client.get(url)


def test_the_page_reads_the_promised_recovery_dates_once(acme, django_assert_num_queries):
    url = reverse("escalations:governance_health", args=[acme.org.slug])
    client = acme.client(acme.executive)
    client.get(url)  # the session and the caches warm
    with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as queries:
        html = client.get(url).content.decode()
    promises = [q["sql"] for q in queries.captured_queries if '"expected_recovery" >=' in q["sql"]]
    assert len(promises) == 1, promises
    assert "Recovery dates kept" in html
    with time_machine.travel(NOW, tick=False), django_assert_num_queries(PAGE_QUERIES):
        client.get(url)


def test_an_organization_with_nothing_yet_shows_empty_states(db):
    from tests.conftest import make_tenant

    t = make_tenant("initech")
    Kpi.objects.filter(organization=t.org).update(created_at=LONG_AGO, archived_at=LONG_AGO)
    response = t.client(t.admin).get(reverse("escalations:governance_health", args=[t.org.slug]))
    html = response.content.decode()
    assert response.status_code == 200 and 'role="img"' not in html
    assert "No KPI was tracked in these weeks." in html and "escalation tasks in 12 weeks" in html


def test_the_hit_rate_of_promised_recovery_dates_by_week_of_the_promise(acme, stranger_tenant):
    def path(name: str, promised: date, resolved: datetime | None, resolution: str = "recovered", org=acme):
        ws = WorkstreamFactory(
            kpi=kpi(org, name), opened_at=local(9, 1), resolved_at=resolved, resolution=resolution if resolved else ""
        )
        MitigationPathFactory(
            workstream=ws,
            root_cause="Cause",
            filed_by=org.lead.user,
            expected_recovery=promised,
            state="approved",
            reviewed_by=org.executive.user,
            reviewed_at=local(9, 2),
        )

    path("On time", date(2026, 10, 14), local(10, 14, 23))  # the promised day counts whole (Berlin)
    path(
        "Late",
        date(2026, 10, 14),
        local(
            10,
            15,
            0,
        )
        + timedelta(minutes=1),
    )
    path("Closed instead", date(2026, 10, 20), local(10, 19), resolution="accepted_risk")
    path("Still red", date(2026, 10, 21), None)
    path("Promised later, done early", date(2026, 11, 4), local(11, 3))
    path("Promised later, still open", date(2026, 11, 5), None)  # no verdict yet
    path("Stranger's", date(2026, 10, 14), None, org=stranger_tenant)
    _, m = metric(acme.org, "promised_recovery")
    assert m.cells == ["50% (1/2)", "0% (0/2)", "—", "100% (1/1)"]
    assert m.headline == "40%" and "2 of 5" in m.headline_label
    # Whose promises hold: the same verdicts per team and KPI owner, the stranger's not among them.
    assert m.by_owner == [PromiseRecord(acme.team.name, acme.lead.user.name, 2, 5)]


def test_the_weakest_record_of_promises_comes_first(acme):
    other = MembershipFactory(organization=acme.org, user__name="Zoe Zed")
    for name, owner, resolved in [("A", acme.lead, local(10, 14)), ("B", other, None), ("C", other, local(10, 14))]:
        k = kpi(acme, name)
        Kpi.objects.filter(pk=k.pk).update(owner=owner)
        ws = WorkstreamFactory(
            kpi=k,
            opened_at=local(9, 1),
            resolved_at=resolved,
            resolution="recovered" if resolved else "",
        )
        MitigationPathFactory(
            workstream=ws,
            root_cause="Cause",
            filed_by=owner.user,
            expected_recovery=date(2026, 10, 14),
            state="approved",
            reviewed_by=acme.executive.user,
            reviewed_at=local(9, 2),
        )
    _, m = metric(acme.org, "promised_recovery")
    assert [(r.owner, r.kept, r.promised, r.rate) for r in m.by_owner] == [
        ("Zoe Zed", 1, 2, 50),
        (acme.lead.user.name, 1, 1, 100),
    ]
    url = reverse("escalations:governance_health", args=[acme.org.slug]) + "?weeks=4"
    with time_machine.travel(NOW, tick=False):
        html = acme.client(acme.executive).get(url)
    assert "Recovery dates kept, by owner" in html.content.decode()
