"""factory_boy factories for the escalations models tests build by hand. Each row's organization comes from the
KPI (or the row) it belongs to, so a factory never mixes two tenants."""

from __future__ import annotations

from datetime import date, timedelta

import factory
from django.utils import timezone

from escalations.models import (
    EscalationLevel,
    EscalationPolicy,
    MitigationAction,
    MitigationPath,
    Notification,
    Task,
    Workstream,
)
from tests.factories import KpiFactory, MembershipFactory, OrganizationFactory, UserFactory

SAME_ORG = factory.SelfAttribute("..organization")


class EscalationPolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EscalationPolicy

    organization = factory.SubFactory(OrganizationFactory)
    key = factory.Sequence(lambda n: f"policy-{n}")
    name = factory.Sequence(lambda n: f"Policy {n}")
    mitigation_due = timedelta(days=2)
    ack_timeout = timedelta(hours=4)


class EscalationLevelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EscalationLevel

    policy = factory.SubFactory(EscalationPolicyFactory)
    organization = factory.SelfAttribute("policy.organization")
    position = 1
    targets = factory.LazyFunction(lambda: ["team_lead"])
    wait = timedelta(days=1)


class WorkstreamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workstream

    kpi = factory.SubFactory(KpiFactory)
    organization = factory.SelfAttribute("kpi.organization")
    severity = "off_track"
    opened_at = factory.LazyFunction(timezone.now)


class MitigationPathFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MitigationPath

    workstream = factory.SubFactory(WorkstreamFactory)
    organization = factory.SelfAttribute("workstream.organization")
    root_cause = "Campaign paused"
    expected_recovery = date(2026, 12, 31)
    filed_by = factory.SubFactory(UserFactory)


class MitigationActionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MitigationAction

    path = factory.SubFactory(MitigationPathFactory)
    organization = factory.SelfAttribute("path.organization")
    description = "Restart the campaign"
    owner = factory.SubFactory(MembershipFactory, organization=SAME_ORG)
    due = date(2026, 12, 15)


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    workstream = factory.SubFactory(WorkstreamFactory)
    kpi = factory.SelfAttribute("workstream.kpi")
    organization = factory.SelfAttribute("kpi.organization")
    kind = Task.Kind.ESCALATION
    assignee = factory.SubFactory(MembershipFactory, organization=SAME_ORG)
    due_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=1))
    dedup_key = factory.Sequence(lambda n: f"task-{n}")


class NotificationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Notification

    recipient = factory.SubFactory(MembershipFactory)
    organization = factory.SelfAttribute("recipient.organization")
    kind = Task.Kind.ESCALATION
    channel = Notification.Channel.IN_APP
    dedup_key = factory.Sequence(lambda n: f"notification-{n}")
    subject = "Escalation"
    body = "No path approved"
