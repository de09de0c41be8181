"""A leaver's KPIs (issue 19): the identity provider deactivates someone who owns KPIs; each KPI's transfer request
becomes an inbox task for the person asked, escalated to the other admins and then the executives while nobody
accepts it, and stopped by an acceptance or a refusal (a refused one goes to the next admin)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.urls import reverse

from escalations.engine.sweeps import advance_escalations
from escalations.models import Decision, Notification, Task
from governance import tenancy
from governance.identity.services import scim_user_deactivate
from governance.models import AuditEvent, Role
from scorecards.models import Kpi, OwnershipTransfer
from tests.factories import KpiFactory, MembershipFactory, OrganizationFactory, TeamFactory

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday, 09:00 in Berlin (the organizations' zone)
DAY, MINUTE = timedelta(days=1), timedelta(minutes=1)
KIND = Task.Kind.OWNERSHIP_TRANSFER


@pytest.fixture
def leaver(tenant):
    """A member of the tenant's team (led by lead@) who owns one KPI, deactivated by the identity provider at T0."""
    tenant.leaver = MembershipFactory(organization=tenant.org, user__name="Lee Leaver", user__email="lee@acme.test")
    tenant.orphan = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.leaver, name="Churn")
    with time_machine.travel(T0, tick=False):
        scim_user_deactivate(membership=tenant.leaver, actor=tenant.admin.user)
    return tenant


def sweep(at: datetime) -> None:
    with time_machine.travel(at, tick=False):
        advance_escalations(now=at)


def open_tasks() -> list[tuple[str, int]]:
    """(assignee's email, level) of every open ownership transfer task."""
    rows = Task.objects.filter(kind=KIND, state__in=["open", "acknowledged"]).order_by("level", "assignee__user__email")
    return list(rows.values_list("assignee__user__email", "level"))


def inbox(tenant, membership) -> str:
    return tenant.client(membership).get(reverse("escalations:task_inbox", args=[tenant.org.slug])).content.decode()


def decide(tenant, membership, transfer: OwnershipTransfer, decision: str, note: str = "I take it on"):
    url = reverse("escalations:transfer_decide", args=[tenant.org.slug, transfer.pk])
    return tenant.client(membership).post(url, {"decision": decision, "note": note, "next": "inbox"})


def test_the_lead_is_asked_then_the_admins_then_the_executives_after_two_business_days_each(leaver):
    sweep(T0)
    assert open_tasks() == [("lead@acme.test", 0)]  # the tenant's other transfer (an active owner's) is no task
    task = Task.objects.get(kind=KIND)
    assert task.kpi == leaver.orphan and task.due_at == T0 + 2 * DAY  # Mon 09:00 + 16 open hours: Wed 09:00
    assert Notification.objects.filter(recipient=leaver.lead, kind=KIND, subject="Accept ownership of Churn").exists()

    sweep(T0 + 2 * DAY - MINUTE)
    assert open_tasks() == [("lead@acme.test", 0)]
    sweep(T0 + 2 * DAY)
    assert open_tasks() == [("lead@acme.test", 0), ("admin@acme.test", 1)]  # an admin: executives wait
    assert Notification.objects.filter(
        recipient=leaver.admin, kind=KIND, subject="Escalation: nobody has accepted ownership of Churn"
    ).exists()
    sweep(T0 + 4 * DAY)
    assert open_tasks() == [("lead@acme.test", 0), ("admin@acme.test", 1), ("exec@acme.test", 2)]
    sweep(T0 + 9 * DAY)  # nothing beyond the executives, and nothing twice
    assert Task.objects.filter(kind=KIND).count() == 3
    verbs = AuditEvent.objects.filter(organization=leaver.org, verb__startswith="kpi.transfer_").values_list(
        "verb", flat=True
    )
    assert sorted(verbs).count("kpi.transfer_escalated") == 2 and "kpi.transfer_tasked" in verbs
    assert Kpi.objects.get(pk=leaver.orphan.pk).owner == leaver.leaver  # nothing silently reassigned


def test_with_no_other_admin_the_executives_are_escalated_to(leaver):
    leaver.lead.role = Role.ADMIN  # the addressee is the only admin
    leaver.lead.save(update_fields=["role"])
    leaver.admin.is_active = False
    leaver.admin.save(update_fields=["is_active"])
    sweep(T0 + 2 * DAY)
    assert open_tasks() == [("lead@acme.test", 0), ("exec@acme.test", 1)]
    sweep(T0 + 4 * DAY)  # the executives have their task already
    assert Task.objects.filter(kind=KIND).count() == 2


@pytest.mark.parametrize(("who", "at"), [("lead", T0), ("admin", T0 + 2 * DAY)])
def test_accepting_from_the_inbox_stops_the_escalation_and_the_acceptor_owns_the_kpi(leaver, who, at):
    sweep(at)
    acceptor = getattr(leaver, who)
    transfer = OwnershipTransfer.objects.get(kpi=leaver.orphan, state="pending")
    with time_machine.travel(at + MINUTE, tick=False):
        response = decide(leaver, acceptor, transfer, "take")
    assert response.status_code == 302 and response["Location"].endswith("/inbox/")
    assert Kpi.objects.get(pk=leaver.orphan.pk).owner == acceptor
    assert open_tasks() == []
    assert set(Task.objects.filter(kind=KIND).values_list("state", flat=True)) == {"done"}
    assert Decision.objects.get(kind=Decision.Kind.TRANSFER_DECIDED, kpi=leaver.orphan).decided_by == acceptor.user
    assert AuditEvent.objects.filter(organization=leaver.org, verb="kpi.transfer_tasks_closed").exists()
    sweep(T0 + 9 * DAY)  # stopped: nobody else is escalated to
    assert open_tasks() == [] and Task.objects.filter(kind=KIND, level=2).count() == 0


def test_a_declined_transfer_goes_to_the_next_admin_so_the_kpi_always_waits_for_someone(leaver):
    sweep(T0)
    transfer = OwnershipTransfer.objects.get(kpi=leaver.orphan, state="pending")
    with time_machine.travel(T0, tick=False):
        assert decide(leaver, leaver.lead, transfer, "reject", note="Not my area").status_code == 302
    again = OwnershipTransfer.objects.get(kpi=leaver.orphan, state="pending")
    assert again.to_owner == leaver.admin and again.from_owner == leaver.leaver
    sweep(T0 + MINUTE)
    assert open_tasks() == [("admin@acme.test", 0)]  # the lead's task is done; the admin's own request is
    assert Task.objects.get(kind=KIND, assignee=leaver.lead).state == "done"
    assert Kpi.objects.get(pk=leaver.orphan.pk).owner == leaver.leaver
    assert decide(leaver, leaver.admin, again, "reject", note="Executives decide").status_code == 302
    assert OwnershipTransfer.objects.get(kpi=leaver.orphan, state="pending").to_owner == leaver.executive


def test_only_the_people_asked_or_escalated_to_decide_and_a_reason_is_required(leaver):
    sweep(T0)
    transfer = OwnershipTransfer.objects.get(kpi=leaver.orphan, state="pending")
    assert decide(leaver, leaver.member, transfer, "take").status_code == 403  # a member not asked
    decide(leaver, leaver.lead, transfer, "take", note="  ")
    assert Kpi.objects.get(pk=leaver.orphan.pk).owner == leaver.leaver  # no reason: nothing changed
    assert OwnershipTransfer.objects.get(pk=transfer.pk).state == "pending" and open_tasks()


def test_two_sweeps_one_after_the_other_write_each_step_once(leaver):
    sweep(T0 + 2 * DAY)
    sweep(T0 + 2 * DAY)
    assert open_tasks() == [("lead@acme.test", 0), ("admin@acme.test", 1)]
    assert Notification.objects.filter(kind=KIND, channel="in_app").count() == 2
    assert AuditEvent.objects.filter(verb__in=["kpi.transfer_tasked", "kpi.transfer_escalated"]).count() == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_make_one_task_each():
    org = OrganizationFactory()
    admin = MembershipFactory(organization=org, role=Role.ADMIN)
    lead = MembershipFactory(organization=org)
    team = TeamFactory(organization=org, lead=lead)
    leavers = [MembershipFactory(organization=org) for _ in range(5)]
    for person in leavers:
        for _ in range(4):
            KpiFactory(organization=org, team=team, owner=person)
        scim_user_deactivate(membership=person, actor=admin.user)
    now = T0 + 2 * DAY
    OwnershipTransfer.objects.update(requested_at=T0)

    def run() -> None:
        try:
            with tenancy.for_sweep(None):
                advance_escalations(now=now)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Task.objects.filter(kind=KIND, assignee=lead, level=0).count() == 20
    assert Task.objects.filter(kind=KIND, assignee=admin, level=1).count() == 20
    assert AuditEvent.objects.filter(verb__in=["kpi.transfer_tasked", "kpi.transfer_escalated"]).count() == 40


def test_another_organizations_leavers_never_reach_this_one(leaver, stranger_tenant):
    stranger = MembershipFactory(organization=stranger_tenant.org, user__name="Sam Stranger")
    KpiFactory(organization=stranger_tenant.org, team=stranger_tenant.team, owner=stranger, name="Globex margin")
    with time_machine.travel(T0, tick=False):
        scim_user_deactivate(membership=stranger, actor=stranger_tenant.admin.user)
    sweep(T0 + 4 * DAY)
    for task in Task.objects.filter(kind=KIND).select_related("assignee", "kpi"):
        assert task.assignee.organization_id == task.kpi.organization_id == task.organization_id
    assert open_tasks() == [
        ("lead@acme.test", 0),
        ("lead@globex.test", 0),
        ("admin@acme.test", 1),
        ("admin@globex.test", 1),
        ("exec@acme.test", 2),
        ("exec@globex.test", 2),
    ]
    page = inbox(leaver, leaver.admin)
    assert "Churn" in page and "Globex margin" not in page and "Sam Stranger" not in page
    theirs = OwnershipTransfer.objects.get(from_owner=stranger, state="pending")
    assert decide(leaver, leaver.admin, theirs, "take").status_code == 404


def test_the_inbox_shows_the_kpi_the_leaver_and_accept_and_decline(leaver):
    sweep(T0 + 2 * DAY)
    transfer = OwnershipTransfer.objects.get(kpi=leaver.orphan, state="pending")
    action = reverse("escalations:transfer_decide", args=[leaver.org.slug, transfer.pk])
    mine = inbox(leaver, leaver.lead)
    assert "Accept ownership" in mine and "Churn" in mine and "Lee Leaver" in mine and action in mine
    assert 'value="take"' in mine and 'value="reject"' in mine
    escalated = inbox(leaver, leaver.admin)
    assert "Escalated to you (level 1)" in escalated and "Take ownership yourself" in escalated
    assert action in escalated


def test_a_leavers_transfer_is_not_withdrawn_so_the_kpi_keeps_someone_asked(leaver):
    transfer = OwnershipTransfer.objects.get(kpi=leaver.orphan, state="pending")
    url = reverse("scorecards:transfer_cancel", args=[leaver.org.slug, transfer.pk])
    response = leaver.client(leaver.admin).post(url, follow=True)
    assert "decline the transfer instead" in response.content.decode()
    assert OwnershipTransfer.objects.get(pk=transfer.pk).state == "pending"
