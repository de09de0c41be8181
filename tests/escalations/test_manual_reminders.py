"""The tasks of manual KPIs (escalations.engine.manual_values) and their pages: the entry reminder once per period
whatever the beats, the approver's task and its confirm and reject in place, and strangers kept out."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from escalations.collaboration.models import Attachment
from escalations.engine.manual_values import remind_manual_values
from escalations.management.commands.tick import SWEEPS
from escalations.models import Decision, Notification, Task
from governance.models import AuditEvent
from scorecards import manual as calendar
from scorecards.manual import manual_value_enter
from scorecards.models import Kpi, ManualValue, Measurement, Period
from scorecards.services import manual_kpi_set
from tests.conftest import Tenant

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def make_manual(t: Tenant) -> Kpi:
    # Created in the summer: every period since then asks for its value.
    Kpi.objects.filter(pk=t.kpi.pk).update(created_at=datetime(2026, 6, 1, tzinfo=UTC), data_source=None)
    t.kpi.refresh_from_db()
    manual_kpi_set(kpi=t.kpi, actor=t.admin.user, period=Period.MONTHLY, updaters=[t.member], approver=t.executive)
    return t.kpi


def url(name: str, t: Tenant, **kwargs) -> str:
    return reverse(f"escalations:{name}", kwargs={"org_slug": t.org.slug, **kwargs})


def tasks(kind: str) -> list[tuple[str, int]]:
    return sorted(Task.objects.filter(kind=kind).values_list("state", "assignee_id"))


def test_a_period_that_ended_asks_its_updaters_once_however_many_beats_run(tenant):
    make_manual(tenant)

    first = remind_manual_values(now=NOW)
    second = remind_manual_values(now=NOW + timedelta(minutes=5))

    assert (first, second) == (2, 0)
    assert tasks(Task.Kind.MANUAL_ENTRY) == sorted([("open", tenant.lead.pk), ("open", tenant.member.pk)])
    task = Task.objects.get(kind=Task.Kind.MANUAL_ENTRY, assignee=tenant.member)
    assert task.dedup_key == f"{tenant.org.pk}:{tenant.kpi.pk}:manual:2026-11-01:entry:{tenant.member.pk}"
    # Due five days after November ended in Berlin.
    assert task.due_at == datetime(2026, 12, 5, 23, tzinfo=UTC)
    told = Notification.objects.filter(kind=Task.Kind.MANUAL_ENTRY, channel="email")
    assert sorted(told.values_list("recipient_id", flat=True)) == sorted([tenant.lead.pk, tenant.member.pk])


def test_the_period_follows_the_organizations_calendar(tenant):
    make_manual(tenant)
    # 23:30 UTC on 30 November is already 1 December in Berlin: November has ended there.
    assert remind_manual_values(now=datetime(2026, 11, 30, 23, 30, tzinfo=UTC)) == 2
    assert {key.split(":")[3] for key in Task.objects.values_list("dedup_key", flat=True)} == {"2026-11-01"}


def test_an_entered_value_closes_the_entry_tasks_and_asks_the_approver_once(tenant):
    kpi = make_manual(tenant)
    remind_manual_values(now=NOW)
    manual_value_enter(kpi=kpi, by=tenant.member, period_start_day=date(2026, 11, 1), value=7, now=NOW)

    assert remind_manual_values(now=NOW + timedelta(minutes=5)) == 1
    assert remind_manual_values(now=NOW + timedelta(minutes=10)) == 0

    assert tasks(Task.Kind.MANUAL_ENTRY) == sorted([("done", tenant.lead.pk), ("done", tenant.member.pk)])
    assert tasks(Task.Kind.MANUAL_APPROVAL) == [("open", tenant.executive.pk)]


def test_a_new_kpi_asks_for_no_period_before_it_existed(tenant):
    make_manual(tenant)
    Kpi.objects.filter(pk=tenant.kpi.pk).update(created_at=datetime(2026, 12, 3, tzinfo=UTC))
    assert remind_manual_values(now=NOW) == 0


# --- the pages ------------------------------------------------------------------------------------------------


def due_period(t: Tenant) -> date:
    return calendar.due_period(Period.MONTHLY, timezone.localdate(timezone.now(), t.org.tzinfo))


def test_a_kpi_no_longer_kept_by_hand_chases_nobody(tenant):
    kpi = make_manual(tenant)
    now = timezone.now()
    manual_value_enter(kpi=kpi, by=tenant.member, period_start_day=due_period(tenant), value=3)
    remind_manual_values(now=now)
    [asked] = Task.objects.filter(state=Task.State.OPEN)
    assert (asked.kind, asked.assignee) == (Task.Kind.MANUAL_APPROVAL, tenant.executive)
    manual_kpi_set(kpi=kpi, actor=tenant.admin.user, period=None)  # the manifest dropped `manual:`
    remind_manual_values(now=now + timedelta(minutes=5))
    assert Task.objects.get(pk=asked.pk).state == Task.State.CANCELLED
    assert not Task.objects.filter(state=Task.State.OPEN).exists()
    remind_manual_values(now=now + timedelta(minutes=10))  # nothing new, nothing twice
    assert AuditEvent.objects.filter(verb="manual_value.tasks_cancelled", object_id=str(kpi.pk)).count() == 1
    assert ManualValue.objects.get(kpi=kpi).state == ManualValue.State.PENDING  # on record, undecided


def test_an_updater_enters_on_the_kpi_page_and_the_approver_confirms_in_the_inbox(tenant):
    kpi = make_manual(tenant)
    period = due_period(tenant)
    member = tenant.client(tenant.member)

    page = member.get(url("manual_values", tenant, kpi_id=kpi.pk), HTTP_HX_REQUEST="true")
    assert page.status_code == 200 and "Enter for confirmation" in page.content.decode()
    entered = member.post(
        url("manual_value_enter", tenant, kpi_id=kpi.pk),
        {"period": period.isoformat(), "value": "1234.5", "note": "Board pack", "evidence_url": "docs.acme.test/x"},
        HTTP_HX_REQUEST="true",
    )
    html = entered.content.decode()
    assert entered.status_code == 200 and "entered; it counts once" in html
    value = ManualValue.objects.get(kpi=kpi)
    assert (value.value, value.evidence_url) == (1234.5, "https://docs.acme.test/x")
    assert "Confirm</button>" not in html  # the updater never confirms their own value

    executive = tenant.client(tenant.executive)
    task = Task.objects.get(kind=Task.Kind.MANUAL_APPROVAL, assignee=tenant.executive)  # asked at once
    inbox = executive.get(url("task_inbox", tenant)).content.decode()
    assert "entered a value for this KPI" in inbox and "1,234.5 leads" in inbox
    answered = executive.post(
        url("manual_value_decide", tenant, value_id=value.pk),
        {"decision": "confirm", "next": "inbox", "task": task.pk},
        HTTP_HX_REQUEST="true",
    )
    assert answered.status_code == 200 and "Confirmed: the value counts now" in answered.content.decode()
    assert Measurement.objects.get(kpi=kpi).value == 1234.5
    assert Task.objects.get(pk=task.pk).state == Task.State.DONE
    # Four eyes on the record: the confirmation is a decision of the executive's, on the KPI's decision log.
    [decision] = Decision.objects.filter(kpi=kpi)
    label = calendar.period_label(Period.MONTHLY, period)
    assert (decision.kind, decision.decided_by, decision.self_approved) == (
        "value_confirmed",
        tenant.executive.user,
        False,
    )
    assert decision.reason == f"Confirmed 1234.5 for {label}, entered by {tenant.member.user.name}."
    log = executive.get(reverse("escalations:decision_log", args=[tenant.org.slug])).content.decode()
    assert "Confirmed a manual value" in log and f"{label}: 1234.5" in log


def test_a_rejection_is_a_decision_with_its_reason(tenant):
    kpi = make_manual(tenant)
    value = manual_value_enter(kpi=kpi, by=tenant.member, period_start_day=due_period(tenant), value=3)
    response = tenant.client(tenant.executive).post(
        url("manual_value_decide", tenant, value_id=value.pk), {"decision": "reject", "reason": "Wrong month's report"}
    )
    assert response.status_code == 302
    assert ManualValue.objects.get(pk=value.pk).state == ManualValue.State.REJECTED
    [decision] = Decision.objects.filter(kpi=kpi)
    assert (decision.kind, decision.reason, decision.payload["value"]) == ("value_rejected", "Wrong month's report", 3)


def test_the_updater_attaches_evidence_the_approver_opens_and_strangers_cannot(tenant, stranger_tenant):
    kpi = make_manual(tenant)
    value = manual_value_enter(kpi=kpi, by=tenant.member, period_start_day=due_period(tenant), value=3)
    files = reverse("collaboration:attachment_list", args=[tenant.org.slug, "manual_value", value.pk])
    panel = tenant.client(tenant.executive).get(url("manual_values", tenant, kpi_id=kpi.pk), HTTP_HX_REQUEST="true")
    assert f'href="{files}">Evidence files</a>' in panel.content.decode()

    upload = SimpleUploadedFile("board-pack.pdf", b"%PDF-1.7\nNovember")
    assert (
        "Attached board-pack.pdf"
        in tenant.client(tenant.member).post(files, {"file": upload}, follow=True).content.decode()
    )
    [attachment] = Attachment.objects.filter(organization=tenant.org)
    listed = tenant.client(tenant.executive).get(files).content.decode()
    label = calendar.period_label(Period.MONTHLY, value.period_start)
    assert "board-pack.pdf" in listed and f"the {label} value of {kpi.name}" in listed
    download = reverse("collaboration:attachment_download", args=[tenant.org.slug, attachment.pk])
    assert tenant.client(tenant.executive).get(download).status_code == 200
    stranger = stranger_tenant.client(stranger_tenant.admin)
    assert stranger.get(files).status_code == 404
    assert stranger.get(download).status_code == 404


def test_a_rejection_without_a_reason_is_refused_in_place_and_loses_nothing(tenant):
    kpi = make_manual(tenant)
    value = manual_value_enter(kpi=kpi, by=tenant.member, period_start_day=due_period(tenant), value=3)
    response = tenant.client(tenant.executive).post(
        url("manual_value_decide", tenant, value_id=value.pk), {"decision": "reject"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and "Every decision needs its reason" in response.content.decode()
    assert ManualValue.objects.get(pk=value.pk).state == ManualValue.State.PENDING
    assert not Decision.objects.exists()


def test_the_updater_cannot_confirm_through_the_page(tenant):
    kpi = make_manual(tenant)
    value = manual_value_enter(kpi=kpi, by=tenant.member, period_start_day=due_period(tenant), value=3)
    response = tenant.client(tenant.member).post(
        url("manual_value_decide", tenant, value_id=value.pk), {"decision": "confirm"}
    )
    assert response.status_code == 403
    assert ManualValue.objects.get(pk=value.pk).state == ManualValue.State.PENDING
    assert not Decision.objects.exists()


def test_a_locked_period_asks_for_the_correction_reason_on_the_form(tenant):
    kpi = make_manual(tenant)
    period = due_period(tenant)
    value = manual_value_enter(kpi=kpi, by=tenant.member, period_start_day=period, value=3)
    calendar.manual_value_confirm(value=value, by=tenant.executive)
    response = tenant.client(tenant.lead).post(
        url("manual_value_enter", tenant, kpi_id=kpi.pk), {"period": period.isoformat(), "value": "4"}
    )
    assert response.status_code == 422
    assert "confirmed and locked: a correction needs its reason" in response.content.decode()
    assert ManualValue.objects.filter(kpi=kpi).count() == 1


@pytest.mark.parametrize("role", ["member", "executive", "admin"])
def test_another_organizations_people_can_neither_see_enter_nor_decide(tenant, stranger_tenant, role):
    kpi = make_manual(tenant)
    value = manual_value_enter(kpi=kpi, by=tenant.member, period_start_day=due_period(tenant), value=3)
    stranger = stranger_tenant.client(getattr(stranger_tenant, role))
    # Their own organization's URLs with our ids, and our organization's URLs.
    for t in (stranger_tenant, tenant):
        assert stranger.get(url("manual_values", t, kpi_id=kpi.pk)).status_code in (403, 404)
        entered = stranger.post(
            url("manual_value_enter", t, kpi_id=kpi.pk), {"period": value.period_start.isoformat(), "value": "9"}
        )
        assert entered.status_code in (403, 404)
        decided = stranger.post(url("manual_value_decide", t, value_id=value.pk), {"decision": "confirm"})
        assert decided.status_code in (403, 404)
    assert list(ManualValue.objects.values_list("state", flat=True)) == [ManualValue.State.PENDING]
    assert not Measurement.objects.exists()


def test_a_kpi_that_is_not_manual_has_no_manual_page(tenant):
    assert tenant.client(tenant.lead).get(url("manual_values", tenant, kpi_id=tenant.kpi.pk)).status_code == 403


def test_the_kpi_page_loads_the_manual_panel(tenant):
    kpi = make_manual(tenant)
    html = (
        tenant.client(tenant.lead)
        .get(reverse("scorecards:kpi_detail", kwargs={"org_slug": tenant.org.slug, "kpi_id": kpi.pk}))
        .content.decode()
    )
    assert url("manual_values", tenant, kpi_id=kpi.pk) in html and "entered by hand" in html


@time_machine.travel(NOW, tick=False)
def test_the_inbox_lists_manual_tasks_in_a_bounded_number_of_queries(tenant, django_assert_max_num_queries):
    kpi = make_manual(tenant)
    manual_value_enter(kpi=kpi, by=tenant.member, period_start_day=date(2026, 10, 1), value=3, now=NOW)
    remind_manual_values(now=NOW)
    client = tenant.client(tenant.executive)
    with django_assert_max_num_queries(30):
        assert client.get(url("task_inbox", tenant)).status_code == 200


def test_the_command_the_tick_and_the_beat_run_it(tenant):
    make_manual(tenant)
    with time_machine.travel(NOW, tick=False):
        call_command("remind_manual_values", "--org", tenant.org.slug, stdout=(out := io.StringIO()))
    assert out.getvalue().strip() == "Wrote 2 manual value task(s)."
    assert SWEEPS.index("remind_manual_values") < SWEEPS.index("deliver_notifications")
    beat = settings.CELERY_BEAT_SCHEDULE["remind-manual-values"]
    assert beat["task"] == "escalations.tasks.remind_manual_values"
