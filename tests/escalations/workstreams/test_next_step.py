"""What happens next in an episode, said once (escalations.workstreams.selectors.what_next) and the same everywhere: the
inbox, My work, the workstream page and list, the API; acknowledgements, exhaustion and business hours included."""

import html
import json
from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from escalations.engine.sweeps import advance_escalations, process_status_changes
from escalations.models import EscalationLevel, EscalationPolicy, Notification, Task, Workstream
from escalations.notify.formats import DIGEST_KIND
from escalations.reporting.digests import send_digests
from escalations.workstreams.services import task_acknowledge
from governance import formats
from governance.models import Membership, Organization
from governance.services.teams import team_update
from scorecards.models import Kpi, StatusChange
from tests.factories import MembershipFactory

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


@pytest.fixture
def acme(tenant):
    """Owner lead@ files in 2 days; then the team lead head@ (1 day), then the executives (2 days); ack 4 hours."""
    tenant.head = MembershipFactory(organization=tenant.org, user__email="head@acme.test", user__name="Hana Head")
    team_update(team=tenant.team, actor=tenant.admin.user, lead=tenant.head)
    policy = EscalationPolicy.objects.create(
        organization=tenant.org, key="standard", name="Standard", mitigation_due=2 * DAY, ack_timeout=4 * HOUR
    )
    EscalationLevel.objects.create(organization=tenant.org, policy=policy, position=1, targets=["team_lead"], wait=DAY)
    EscalationLevel.objects.create(
        organization=tenant.org, policy=policy, position=2, targets=["role:executive"], wait=2 * DAY
    )
    Kpi.objects.filter(pk=tenant.kpi.pk).update(escalation="standard")
    StatusChange.objects.create(
        organization=tenant.org, kpi=tenant.kpi, old="on_track", new="off_track", value=1, reason="t", changed_at=T0
    )
    return tenant


def sweep(at: datetime) -> None:
    with time_machine.travel(at, tick=False):
        process_status_changes(now=at)
        advance_escalations(now=at)


def shown(tenant, membership, at: datetime) -> dict[str, str]:
    """The page text of each view, and the API's words, at `at`."""
    org, ws = tenant.org.slug, Workstream.objects.get()
    client = tenant.client(membership)
    with time_machine.travel(at, tick=False):
        pages = {
            "inbox": client.get(reverse("escalations:task_inbox", args=[org])),
            "my work": client.get(reverse("scorecards:my_work", args=[org])),
            "workstream": client.get(reverse("escalations:workstream_detail", args=[org, ws.pk])),
            "list": client.get(reverse("escalations:workstream_list", args=[org])),
        }
        api = Client().get("/api/v1/workstreams", HTTP_AUTHORIZATION=f"Bearer {tenant.token}")
    texts = {name: html.unescape(page.content.decode()) for name, page in pages.items()}
    texts["api"] = json.loads(api.content)[0]
    return texts


def test_an_acknowledged_episode_says_the_same_reminder_and_next_level_everywhere(acme):
    sweep(T0)
    sweep(T0 + 2 * DAY)  # the team lead is notified; the executives would be at T0 + 3 days
    with time_machine.travel(T0 + 2 * DAY + HOUR, tick=False):
        task_acknowledge(task=Task.objects.get(kind="escalation"), by=acme.head)
    org = Organization.objects.get(pk=acme.org.pk)
    reminder, next_level = T0 + 2 * DAY + 5 * HOUR, T0 + 3 * DAY + 5 * HOUR
    text = (
        f"Reminder to Hana Head at {formats.when(reminder, org.tzinfo)}; "
        f"next level not before {formats.when(next_level, org.tzinfo)}"
    )
    # The acknowledged task is due when the next level would be, as the line says.
    assert Task.objects.get(kind="escalation").due_at == next_level

    for who in (acme.head, acme.lead):  # the acknowledged task's assignee, and the owner with the mitigation task
        texts = shown(acme, who, T0 + 2 * DAY + 2 * HOUR)
        for name in ("inbox", "my work", "workstream", "list"):
            assert text in texts[name], name
    api = texts["api"]
    assert api["next_step_text"] == text
    assert api["reminder"] == {"kind": "reminder", "at": "2026-11-04T13:00:00Z", "who": ["Hana Head"], "level": 0}
    assert api["next_step"] == {
        "kind": "escalation",
        "at": "2026-11-05T13:00:00Z",
        "who": [acme.executive.user.name],
        "level": 2,
    }
    # The sweep does what the words said.
    sweep(reminder)
    sweep(next_level)
    escalations = Task.objects.filter(kind="escalation").order_by("created_at", "id")
    assert list(escalations.values_list("assignee__user__email", "created_at")) == [
        ("head@acme.test", T0 + 2 * DAY),
        ("head@acme.test", reminder),
        ("exec@acme.test", next_level),
    ]


def test_an_acknowledgement_never_brings_the_next_level_sooner(acme):
    sweep(T0)
    sweep(T0 + 2 * DAY)
    ws = Workstream.objects.get()
    before = shown(acme, acme.head, T0 + 2 * DAY)["api"]["next_step"]["at"]
    with time_machine.travel(T0 + 2 * DAY + HOUR, tick=False):
        task_acknowledge(task=Task.objects.get(kind="escalation"), by=acme.head)
    after = shown(acme, acme.head, T0 + 2 * DAY + HOUR)["api"]["next_step"]["at"]
    assert after >= before
    sweep(T0 + 3 * DAY)  # when level 2 was due before the acknowledgement: still paused
    ws.refresh_from_db()
    assert ws.level == 1


def test_an_exhausted_episode_shows_no_next_step_anywhere_even_once_acknowledged(acme):
    for at in (T0, T0 + 2 * DAY, T0 + 3 * DAY, T0 + 5 * DAY):
        sweep(at)
    ws = Workstream.objects.get()
    assert ws.exhausted_at == T0 + 5 * DAY
    # Acknowledging a task of an exhausted episode brings no next step back.
    with time_machine.travel(T0 + 5 * DAY + HOUR, tick=False):
        task_acknowledge(task=Task.objects.get(kind="escalation", assignee=acme.executive), by=acme.executive)
    ws.refresh_from_db()
    assert (ws.next_escalation_at, ws.renotify) == (None, False)
    texts = shown(acme, acme.executive, T0 + 5 * DAY + 2 * HOUR)
    for name in ("inbox", "my work", "workstream", "list"):
        assert "next-step" not in texts[name] and "Reminder to" not in texts[name], name
    assert "Escalation exhausted" in texts["list"] and "next in" not in texts["list"]
    assert (texts["api"]["next_step"], texts["api"]["reminder"], texts["api"]["next_step_text"]) == (None, None, "")


def test_a_business_hours_levels_reminder_waits_for_business_hours(acme):
    """Berlin, 9 to 17: the team lead's level counts business hours. Acknowledged at 16:00 with 4 hours to wait, the
    reminder is due at 20:00, outside the hours: it comes at Tuesday's opening, and the words say so."""
    Organization.objects.filter(pk=acme.org.pk).update(
        timezone="Europe/Berlin", business_start=time(9), business_end=time(17)
    )
    EscalationLevel.objects.filter(position=1).update(business_hours=True, wait=2 * HOUR)
    monday_open = datetime(2026, 11, 9, 8, 0, tzinfo=UTC)  # 09:00 Berlin
    StatusChange.objects.update(changed_at=monday_open - 2 * DAY)  # mitigation due at the opening
    sweep(monday_open - 2 * DAY)
    sweep(monday_open)
    ack = datetime(2026, 11, 9, 15, 0, tzinfo=UTC)  # 16:00 Berlin
    with time_machine.travel(ack, tick=False):
        task_acknowledge(task=Task.objects.get(kind="escalation"), by=acme.head)
    tuesday_open = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
    ws = Workstream.objects.get()
    assert ws.next_escalation_at == tuesday_open
    org = Organization.objects.get(pk=acme.org.pk)
    texts = shown(acme, acme.head, ack + HOUR)
    assert texts["api"]["next_step_text"] == (
        "Reminder to Hana Head at Tue 10 Nov 09:00; "
        f"next level not before {formats.when(tuesday_open + 2 * HOUR, org.tzinfo)}"
    )
    assert texts["api"]["next_step_text"] in texts["workstream"]
    sweep(ack + 4 * HOUR)  # 20:00 Berlin: nothing yet
    assert Task.objects.filter(kind="escalation").count() == 1
    sweep(tuesday_open)
    assert list(Task.objects.filter(kind="escalation").values_list("created_at", "state")) == [
        (monday_open, "cancelled"),
        (tuesday_open, "open"),
    ]


def test_the_owners_digest_says_what_happens_next_as_the_pages_do(acme):
    EscalationLevel.objects.filter(position=2).update(wait=10 * DAY)
    Membership.objects.filter(organization=acme.org).update(created_at=T0 - 30 * DAY)
    Kpi.objects.filter(organization=acme.org).update(created_at=T0 - 30 * DAY)
    for at in (T0, T0 + 2 * DAY, T0 + 3 * DAY):
        sweep(at)
    monday = datetime(2026, 11, 9, 7, 0, tzinfo=UTC)  # 08:00 in Berlin: the digests' time
    with time_machine.travel(monday, tick=False):
        send_digests(now=monday)
    [episode] = Notification.objects.get(kind=DIGEST_KIND, channel="email", recipient=acme.lead).payload["mine"][
        "episodes"
    ]["rows"]
    said = shown(acme, acme.lead, monday)["api"]["next_step_text"]
    assert episode["next"] == said == "Next: escalation runs out at Sun 15 Nov 09:00; the admins are told"


def test_my_work_marks_overdue_tasks_as_the_inbox_does(acme):
    sweep(T0)
    client = acme.client(acme.lead)
    with time_machine.travel(T0 + 3 * DAY, tick=False):  # the mitigation task was due a day ago
        inbox = client.get(reverse("escalations:task_inbox", args=[acme.org.slug])).content.decode()
        mine = client.get(reverse("scorecards:my_work", args=[acme.org.slug])).content.decode()
    overdue = '<strong class="due due-overdue">24 h overdue</strong>'
    assert overdue in inbox and overdue in mine
    with time_machine.travel(T0 + HOUR, tick=False):
        assert "due-overdue" not in client.get(reverse("scorecards:my_work", args=[acme.org.slug])).content.decode()


def test_a_strangers_workstreams_say_nothing_of_ours(acme, stranger_tenant):
    sweep(T0)
    sweep(T0 + 2 * DAY)
    with time_machine.travel(T0 + 2 * DAY, tick=False):
        api = Client().get("/api/v1/workstreams", HTTP_AUTHORIZATION=f"Bearer {stranger_tenant.token}")
        page = stranger_tenant.client(stranger_tenant.executive).get(
            reverse("escalations:workstream_list", args=[stranger_tenant.org.slug])
        )
    assert json.loads(api.content) == []
    assert "Hana Head" not in page.content.decode()


def test_the_openapi_document_describes_the_next_step_and_the_reminder(db):
    schemas = Client().get("/api/v1/openapi.json").json()["components"]["schemas"]
    fields = schemas["WorkstreamOut"]["properties"]
    assert {"next_step", "reminder", "next_step_text"} <= set(fields)
    assert "waiting on upstream" in json.dumps(fields["next_step"])
    assert set(schemas["UpcomingOut"]["properties"]) == {"kind", "at", "who", "level"}
