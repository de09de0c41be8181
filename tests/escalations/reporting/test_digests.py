"""The weekly digest: due at Monday 08:00 in each organization's zone, across DST, once per person and week (also
with two sweeps through a real worker), catching up once after downtime; what it says; opting out; strangers."""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from escalations.management.commands.tick import SWEEPS
from escalations.models import MitigationAction, MitigationPath, Notification, Task, Workstream
from escalations.notify.fanout import deliver_due
from escalations.notify.formats import DIGEST_KIND
from escalations.notify.kinds import NOTIFICATION_KINDS
from escalations.notify.services import notification_preferences_set
from escalations.reporting import digests
from escalations.reporting.digest_slots import slot_at
from escalations.reporting.digests import send_digests
from governance.models import Membership, Organization, Role
from scorecards.models import Kpi, StatusChange
from tests.conftest import Tenant, worker_settled
from tests.factories import KpiFactory, MembershipFactory, OrganizationFactory, TeamFactory

BERLIN = ZoneInfo("Europe/Berlin")
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)
MONDAY = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # 08:00 in Berlin (CET); the week 2026-W49
SINCE = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
MINUTE, DAY = timedelta(minutes=1), timedelta(days=1)


def local(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=BERLIN)


def backdate(org: Organization) -> None:
    """Fixtures are made at the real time; the digests here run in 2026, with everyone a member since January."""
    Membership.objects.filter(organization=org).update(created_at=LONG_AGO)
    Kpi.objects.filter(organization=org).update(created_at=LONG_AGO)


def sweep(at: datetime, org: Organization | None = None) -> int:
    """The sweep at `at`, for one organization (as `send_digests --org`) or all."""
    with time_machine.travel(at, tick=False):
        return send_digests(org_id=org.pk if org else None)


def sent(org: Organization | None = None) -> list[tuple[str, str, str]]:
    """(recipient email, channel, dedup key) of every digest written."""
    rows = Notification.objects.filter(kind=DIGEST_KIND)
    if org:
        rows = rows.filter(organization=org)
    return sorted(rows.values_list("recipient__user__email", "channel", "dedup_key"))


def recipients(org: Organization | None = None) -> set[str]:
    return {email for email, channel, _ in sent(org) if channel == "email"}


def content(email: str) -> dict:
    return Notification.objects.get(kind=DIGEST_KIND, channel="email", recipient__user__email=email).payload


def task(t: Tenant, assignee: Membership, *, created: datetime, due: datetime, kind=Task.Kind.MITIGATION, ws=None):
    return Task.objects.create(
        organization=t.org,
        kind=kind,
        assignee=assignee,
        kpi=t.kpi,
        workstream=ws,
        due_at=due,
        created_at=created,
        dedup_key=f"{t.org.slug}:task:{Task.objects.count()}",
    )


@pytest.fixture
def acme(tenant, stranger_tenant):
    backdate(tenant.org)
    backdate(stranger_tenant.org)
    return tenant


# --- when ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "now", "send_at", "hours", "week"),
    [
        # Berlin, the week the clocks go forward (29 Mar) and the week they go back (25 Oct).
        ("Europe/Berlin", datetime(2026, 3, 30, 6, 0, tzinfo=UTC), datetime(2026, 3, 30, 6, 0, tzinfo=UTC), 167, 14),
        ("Europe/Berlin", datetime(2026, 3, 30, 5, 59, tzinfo=UTC), None, None, None),
        ("Europe/Berlin", datetime(2026, 10, 26, 7, 0, tzinfo=UTC), datetime(2026, 10, 26, 7, 0, tzinfo=UTC), 169, 44),
        ("Europe/Berlin", datetime(2026, 10, 26, 6, 30, tzinfo=UTC), None, None, None),  # 07:30 local: not yet
        ("Europe/Berlin", datetime(2026, 11, 29, 22, 0, tzinfo=UTC), datetime(2026, 11, 23, 7, 0, tzinfo=UTC), 168, 48),
        (
            "America/New_York",
            datetime(2026, 11, 2, 13, 0, tzinfo=UTC),
            datetime(2026, 11, 2, 13, 0, tzinfo=UTC),
            169,
            45,
        ),
        # Auckland's Monday 08:00 is Sunday evening in UTC: the week is the local one (W40), not UTC's (W39).
        (
            "Pacific/Auckland",
            datetime(2026, 9, 27, 19, 0, tzinfo=UTC),
            datetime(2026, 9, 27, 19, 0, tzinfo=UTC),
            167,
            40,
        ),
        ("Asia/Kolkata", datetime(2026, 11, 30, 2, 30, tzinfo=UTC), datetime(2026, 11, 30, 2, 30, tzinfo=UTC), 168, 49),
    ],
)
def test_the_digest_is_due_at_monday_0800_local_and_a_dst_week_is_167_or_169_hours(zone, now, send_at, hours, week):
    slot = slot_at(ZoneInfo(zone), now)
    if send_at is None:
        assert slot is None
        return
    assert slot.send_at == send_at and slot.week == f"2026-W{week:02d}"
    assert (slot.send_at - slot.since) / timedelta(hours=1) == hours


def test_it_goes_out_at_0800_local_once_per_person(acme):
    task(acme, acme.lead, created=local(11, 20), due=local(11, 22))  # the owner has an item; the admin has none
    assert sweep(MONDAY - MINUTE, acme.org) == 0
    assert sweep(MONDAY, acme.org) == 2
    assert sweep(MONDAY + 5 * MINUTE, acme.org) == 0 and sweep(MONDAY + 3 * DAY, acme.org) == 0
    week = f"{acme.org.pk}:digest:2026-W49"
    assert sent(acme.org) == [
        (acme.executive.user.email, "email", f"{week}:{acme.executive.pk}"),
        (acme.executive.user.email, "in_app", f"{week}:{acme.executive.pk}"),
        (acme.lead.user.email, "email", f"{week}:{acme.lead.pk}"),
        (acme.lead.user.email, "in_app", f"{week}:{acme.lead.pk}"),
    ]
    # The in-app copy is delivered when written; the email waits for the delivery sweep.
    assert Notification.objects.filter(kind=DIGEST_KIND, channel="in_app", delivered_at=MONDAY).count() == 2
    assert Notification.objects.filter(kind=DIGEST_KIND, channel="email", next_attempt_at=MONDAY).count() == 2


def test_across_both_dst_changes_it_stays_at_0800_local(acme):
    for before, due in [
        (datetime(2026, 3, 23, 6, 59, tzinfo=UTC), datetime(2026, 3, 23, 7, 0, tzinfo=UTC)),  # CET
        (datetime(2026, 3, 30, 5, 59, tzinfo=UTC), datetime(2026, 3, 30, 6, 0, tzinfo=UTC)),  # CEST, 167 h later
        (datetime(2026, 10, 19, 5, 59, tzinfo=UTC), datetime(2026, 10, 19, 6, 0, tzinfo=UTC)),  # CEST
        (datetime(2026, 10, 26, 6, 59, tzinfo=UTC), datetime(2026, 10, 26, 7, 0, tzinfo=UTC)),  # CET, 169 h later
    ]:
        assert sweep(before, acme.org) == 0, before
        assert sweep(due, acme.org) == 1 and sweep(due + MINUTE, acme.org) == 0, due  # the executive
    weeks = sorted(key.split(":")[2] for _, channel, key in sent(acme.org) if channel == "email")
    assert weeks == ["2026-W13", "2026-W14", "2026-W43", "2026-W44"]


def test_organizations_in_other_zones_get_theirs_at_their_own_0800(acme, stranger_tenant):
    Organization.objects.filter(pk=stranger_tenant.org.pk).update(timezone="Pacific/Auckland")
    assert sweep(MONDAY - 7 * DAY) == 2  # last week's, for both
    auckland = datetime(2026, 11, 29, 19, 0, tzinfo=UTC)  # Monday 08:00 NZDT, Sunday in UTC and in Berlin
    assert sweep(auckland - MINUTE) == 0
    assert sweep(auckland) == 1
    assert Notification.objects.filter(kind=DIGEST_KIND, created_at=auckland).get(channel="email").dedup_key == (
        f"{stranger_tenant.org.pk}:digest:2026-W49:{stranger_tenant.executive.pk}"
    )
    assert sweep(MONDAY - MINUTE) == 0
    assert sweep(MONDAY) == 1
    assert (
        Notification.objects.filter(kind=DIGEST_KIND, created_at=MONDAY).get(channel="email").recipient
        == acme.executive
    )


def test_a_late_sweep_catches_up_once_and_a_week_missed_entirely_is_not_replayed(acme):
    assert sweep(MONDAY + 2 * DAY + 5 * timedelta(hours=1), acme.org) == 1  # workers down from Sunday to Wednesday
    assert sweep(MONDAY + 3 * DAY, acme.org) == 0
    assert sweep(MONDAY + 7 * DAY, acme.org) == 1  # 2026-W50, on time
    assert sweep(MONDAY + 22 * DAY, acme.org) == 1  # down over all of W51: Tuesday of W52 sends W52's only
    weeks = sorted(key.split(":")[2] for _, channel, key in sent(acme.org) if channel == "email")
    assert weeks == ["2026-W49", "2026-W50", "2026-W52"]


def test_the_database_refuses_a_second_digest_for_the_same_person_and_week(acme):
    sweep(MONDAY, acme.org)
    row = Notification.objects.get(kind=DIGEST_KIND, channel="email")
    row.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        row.save()


def test_who_gets_one_is_decided_at_the_send_time(acme):
    """A member with nothing to do gets none; an item arriving on Wednesday waits for next Monday's digest, and a
    member who joined after the send time waits too."""
    newcomer = MembershipFactory(organization=acme.org, role=Role.EXECUTIVE)
    Membership.objects.filter(pk=newcomer.pk).update(created_at=MONDAY + DAY)
    task(acme, acme.member, created=MONDAY + 2 * DAY, due=MONDAY + 4 * DAY)
    assert sweep(MONDAY + 2 * DAY + MINUTE, acme.org) == 1
    assert recipients(acme.org) == {acme.executive.user.email}
    assert sweep(MONDAY + 7 * DAY, acme.org) == 3
    assert recipients(acme.org) == {acme.executive.user.email, acme.member.user.email, newcomer.user.email}


def test_a_member_switches_it_off_per_channel_or_entirely(acme):
    notification_preferences_set(membership=acme.executive, off={(DIGEST_KIND, "email")})
    notification_preferences_set(membership=acme.lead, off={(DIGEST_KIND, "email"), (DIGEST_KIND, "in_app")})
    task(acme, acme.lead, created=local(11, 20), due=local(12, 2))
    assert sweep(MONDAY, acme.org) == 1
    assert [(email, channel) for email, channel, _ in sent(acme.org)] == [(acme.executive.user.email, "in_app")]
    assert sweep(MONDAY + MINUTE, acme.org) == 0


def test_the_settings_page_offers_the_weekly_digest(acme):
    client = acme.client(acme.member)
    url = reverse("escalations:notification_settings", args=[acme.org.slug])
    assert "Weekly digest, Mondays 08:00" in client.get(url).content.decode()
    form = {f"{kind}__{channel}": "on" for kind in NOTIFICATION_KINDS for channel in Notification.Channel.values}
    del form[f"{DIGEST_KIND}__email"]
    assert client.post(url, form).status_code == 302
    assert set(acme.member.notification_preferences.filter(enabled=False).values_list("kind", "channel")) == {
        (DIGEST_KIND, "email")
    }


# --- what it says --------------------------------------------------------------------------------------------


@pytest.fixture
def week(acme, stranger_tenant):
    """A known week in Berlin, from Monday 23 Nov 08:00 to Monday 30 Nov 08:00."""
    t = acme
    ops = t.team
    throughput = t.kpi  # on track until Wednesday, then off track
    StatusChange.objects.create(
        organization=t.org, kpi=throughput, old="no_data", new="on_track", changed_at=local(11, 1)
    )
    StatusChange.objects.create(
        organization=t.org, kpi=throughput, old="on_track", new="off_track", changed_at=local(11, 25)
    )
    margin = KpiFactory(organization=t.org, team=ops, owner=t.lead, name="Margin")  # at risk and back: no net change
    for old, new, day in (("no_data", "on_track", 1), ("on_track", "at_risk", 24), ("at_risk", "on_track", 26)):
        StatusChange.objects.create(organization=t.org, kpi=margin, old=old, new=new, changed_at=local(11, day))
    leads = KpiFactory(organization=t.org, team=ops, owner=t.member, name="Leads", last_measured_at=local(11, 16))
    StatusChange.objects.create(organization=t.org, kpi=leads, old="on_track", new="stale", changed_at=local(11, 20))
    retired = KpiFactory(organization=t.org, team=ops, owner=t.lead, name="Retired", archived_at=local(11, 27))
    StatusChange.objects.create(organization=t.org, kpi=retired, old="no_data", new="on_track", changed_at=local(11, 1))
    backdate(t.org)
    KpiFactory(organization=t.org, team=ops, owner=t.lead, name="Backlog")  # new this week, no data yet
    Kpi.objects.filter(name="Backlog").update(created_at=local(11, 25))
    Kpi.objects.filter(pk=throughput.pk).update(status="off_track")
    Kpi.objects.filter(pk__in=[margin.pk, retired.pk]).update(status="on_track")
    Kpi.objects.filter(pk=leads.pk).update(status="stale")
    # Awaiting a decision: a path filed for Throughput's episode; Leads' episode ran out of escalation levels.
    ws = Workstream.objects.create(organization=t.org, kpi=throughput, severity="off_track", opened_at=local(11, 25))
    path = MitigationPath.objects.create(
        organization=t.org,
        workstream=ws,
        root_cause="Supplier outage",
        expected_recovery=date(2026, 12, 20),
        filed_by=t.lead.user,
        filed_at=local(11, 26),
    )
    MitigationAction.objects.create(
        organization=t.org, path=path, description="Second supplier", owner=t.member, due=date(2026, 11, 28)
    )
    Workstream.objects.create(
        organization=t.org,
        kpi=leads,
        kind=Workstream.Kind.DATA_FRESHNESS,
        severity="stale",
        opened_at=local(11, 20),
        exhausted_at=local(11, 27),
    )
    task(t, t.lead, created=local(11, 25), due=local(11, 27, 17), ws=ws)  # overdue
    task(t, t.lead, created=local(11, 25), due=local(12, 4, 17), kind=Task.Kind.ESCALATION, ws=ws)
    # The stranger's week: its names must never reach acme's digests.
    s = stranger_tenant
    StatusChange.objects.create(
        organization=s.org, kpi=s.kpi, old="on_track", new="off_track", changed_at=local(11, 25)
    )
    s_ws = Workstream.objects.create(organization=s.org, kpi=s.kpi, severity="off_track", opened_at=local(11, 25))
    MitigationPath.objects.create(
        organization=s.org,
        workstream=s_ws,
        root_cause="Theirs",
        expected_recovery=date(2026, 12, 20),
        filed_by=s.lead.user,
        filed_at=local(11, 26),
    )
    Kpi.objects.filter(pk=s.kpi.pk).update(name="Globex secret")
    return t


def test_the_executive_digest_counts_now_and_a_week_ago_and_lists_changes_decisions_and_stale(week):
    # acme: the executive, the lead (tasks), the member (an action, a stale KPI); globex: its executive and lead.
    assert sweep(MONDAY) == 3 + 2
    d = content(week.executive.user.email)["summary"]
    assert [(c["status"], c["now"], c["before"]) for c in d["counts"]] == [
        ("on_track", 1, 3),  # Margin | Throughput, Margin, Retired (archived since)
        ("off_track", 1, 0),
        ("stale", 1, 1),
        ("no_data", 1, 0),  # Backlog, tracked since Wednesday
    ]
    assert [(c["kpi"], c["old"], c["new"], c["when"]) for c in d["changes"]["rows"]] == [
        ("Throughput", "on_track", "off_track", "Wed 25 Nov")
    ]
    assert [(r["kpi"], r["what"]) for r in d["decisions"]["rows"]] == [
        ("Throughput", "Mitigation path awaiting review since Thu 26 Nov"),
        ("Leads", "Escalation exhausted on Fri 27 Nov, no approved path"),
    ]
    assert [(r["kpi"], r["since"]) for r in d["stale"]["rows"]] == [("Leads", "Mon 16 Nov")]
    assert content(week.executive.user.email)["mine"] is None
    body = Notification.objects.get(kind=DIGEST_KIND, channel="in_app", recipient=week.executive).body
    assert body.startswith("KPIs: 1 on track (-2), 1 off track (+1), 1 stale, 1 no data (+1).")
    assert "1 KPI changed status this week; 2 awaiting a decision." in body


def test_the_owner_digest_lists_their_tasks_actions_and_episodes_with_local_dates(week):
    sweep(MONDAY)
    lead = content(week.lead.user.email)
    assert lead["summary"] is None
    mine = lead["mine"]
    assert [(t["what"], t["due"], t["overdue"]) for t in mine["tasks"]["rows"]] == [
        ("File a mitigation path", "Fri 27 Nov", True),
        ("Escalation", "Fri 4 Dec", False),
    ]
    assert [(e["kpi"], e["path"]) for e in mine["episodes"]["rows"]] == [("Throughput", "path awaiting review")]
    member = content(week.member.user.email)["mine"]
    assert [(a["what"], a["due"], a["overdue"], a["proposed"]) for a in member["actions"]["rows"]] == [
        ("Second supplier", "Sat 28 Nov", True, True)
    ]
    assert [e["kpi"] for e in member["episodes"]["rows"]] == ["Leads"]  # the stale KPI's episode
    subject = Notification.objects.get(kind=DIGEST_KIND, channel="email", recipient=week.lead).subject
    assert subject == "Weekly digest, week of 30 Nov: 1 overdue"


def test_a_strangers_kpis_never_reach_a_digest(week, stranger_tenant):
    sweep(MONDAY)
    for n in Notification.objects.filter(kind=DIGEST_KIND, organization=week.org):
        assert "Globex" not in f"{n.body}{n.payload}" and "Theirs" not in f"{n.body}{n.payload}"
    theirs = content(stranger_tenant.executive.user.email)["summary"]
    assert [c["kpi"] for c in theirs["changes"]["rows"]] == ["Globex secret"]
    assert "Throughput" not in json.dumps(theirs)


def test_the_email_has_a_text_and_an_inline_styled_html_part_and_goes_out_once(week):
    sweep(MONDAY)
    assert deliver_due(now=MONDAY + MINUTE) == 5 and deliver_due(now=MONDAY + 2 * MINUTE) == 0
    message = next(m for m in mail.outbox if m.to == [week.executive.user.email])
    assert message.subject == "[Acme] Weekly digest, week of 30 Nov: 2 awaiting a decision"
    assert "On track -> Off track, Wed 25 Nov" in message.body and "Switch the weekly digest off:" in message.body
    assert f"{settings.SITE_URL}/o/acme/workstreams/" in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html" and 'style="' in html and "class=" not in html
    assert "Throughput" in html and "Mitigation path awaiting review since Thu 26 Nov" in html
    assert f'href="{settings.SITE_URL}/o/acme/notifications/settings/"' in html


def test_the_sweep_reads_a_constant_number_of_queries_however_many_organizations(acme):
    def organizations(n: int) -> None:
        for _ in range(n):
            org = OrganizationFactory(timezone="Asia/Tokyo")
            MembershipFactory(organization=org, role=Role.EXECUTIVE)
            owner = MembershipFactory(organization=org)
            team = TeamFactory(organization=org)
            k = KpiFactory(organization=org, team=team, owner=owner)
            Workstream.objects.create(organization=org, kpi=k, severity="at_risk", opened_at=local(11, 20))
            backdate(org)

    def queries(at: datetime) -> int:
        with time_machine.travel(at, tick=False), CaptureQueriesContext(connection) as captured:
            send_digests()
        return len(captured)

    organizations(2)
    few = queries(MONDAY)
    Notification.objects.all().delete()
    organizations(6)
    assert queries(MONDAY) == few
    assert Notification.objects.filter(kind=DIGEST_KIND, channel="email").count() == 2 + 8 * 2  # acme, globex


def test_the_command_the_tick_and_the_beat_run_it(acme):
    with time_machine.travel(MONDAY, tick=False):
        call_command("send_digests", "--org", "acme", stdout=(out := io.StringIO()))
    assert out.getvalue().strip() == "Wrote 1 weekly digest(s)."
    assert SWEEPS.index("send_digests") < SWEEPS.index("deliver_notifications")
    assert settings.CELERY_BEAT_SCHEDULE["send-digests"]["task"] == "escalations.tasks.send_digests"


# --- through a real worker -----------------------------------------------------------------------------------

needs_redis = pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis://") or connection.vendor != "postgresql",
    reason="needs the real broker (Redis) and PostgreSQL row locks",
)


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_two_digest_sweeps_delivered_at_once_to_a_real_worker_send_one_email_per_person():
    from config.celery import app as celery_app
    from escalations.tasks import deliver_notifications
    from escalations.tasks import send_digests as send_digests_task

    # A zone whose Monday 08:00 has passed this week, whatever the real time (real time: the worker's clock).
    zone = next(
        z
        for z in ("UTC", "Asia/Tokyo", "America/Los_Angeles", "Pacific/Kiritimati")
        if slot_at(ZoneInfo(z), timezone.now())
    )
    count = 2 * digests.ORG_BATCH + 10  # three batches of organizations
    people = 0
    for _ in range(count):
        org = OrganizationFactory(timezone=zone)
        MembershipFactory(organization=org, role=Role.EXECUTIVE)
        owner = MembershipFactory(organization=org)
        k = KpiFactory(organization=org, team=TeamFactory(organization=org), owner=owner)
        Workstream.objects.create(organization=org, kpi=k, severity="at_risk", opened_at=LONG_AGO)
        backdate(org)
        people += 2
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")
    digests_written = Notification.objects.filter(kind=DIGEST_KIND)
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"):
        send_digests_task.delay(), send_digests_task.delay()
        wait_until(lambda: digests_written.count() == 2 * people, 90, "every digest")
        time.sleep(1)  # let the slower sweep finish
        deliver_notifications.delay(), deliver_notifications.delay()
        wait_until(lambda: not digests_written.filter(delivered_at=None).exists(), 90, "every email")
        worker_settled()
    keys = Counter(digests_written.values_list("dedup_key", "channel"))
    assert len(keys) == 2 * people and set(keys.values()) == {1}
    assert len(mail.outbox) == people and len({m.to[0] for m in mail.outbox}) == people
