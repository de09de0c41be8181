from __future__ import annotations

from datetime import timedelta

import factory

from dependencies.models import Dependency
from governance.models import Membership, Organization, Role, Team, User
from scorecards.models import Kpi, KpiSchedule

PASSWORD = "a-test-password-42"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ["email"]
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"person{n}@example.test")
    name = factory.Faker("name")
    password = factory.django.Password(PASSWORD)


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    slug = factory.Sequence(lambda n: f"org-{n}")
    name = factory.Sequence(lambda n: f"Organization {n}")
    timezone = "Europe/Berlin"


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    organization = factory.SubFactory(OrganizationFactory)
    key = factory.Sequence(lambda n: f"team-{n}")
    name = factory.Sequence(lambda n: f"Team {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER


class KpiFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Kpi
        skip_postgeneration_save = True  # the schedule is a row of its own; the KPI needs no second save

    organization = factory.SubFactory(OrganizationFactory)
    key = factory.Sequence(lambda n: f"kpi.{n}")
    name = factory.Sequence(lambda n: f"KPI {n}")
    team = factory.SubFactory(TeamFactory, organization=factory.SelfAttribute("..organization"))
    owner = factory.SubFactory(MembershipFactory, organization=factory.SelfAttribute("..organization"))
    unit = "leads"
    direction = "increase"
    target_value = 1200.0
    thresholds = factory.LazyFunction(lambda: {"warning": 1000, "critical": 800})
    cadence = timedelta(days=1)
    stale_after = timedelta(days=3)
    evaluate_every = timedelta(hours=1)
    pending_for = timedelta(hours=2)
    keep_for = timedelta(hours=1)
    # The KPI's schedule (KpiSchedule), given as if it were the KPI's: KpiFactory(next_evaluation_at=...).
    schedule = factory.RelatedFactory(
        "tests.factories.KpiScheduleFactory",
        factory_related_name="kpi",
        next_evaluation_at=factory.SelfAttribute("..next_evaluation_at"),
        needs_evaluation=factory.SelfAttribute("..needs_evaluation"),
        evaluated_at=factory.SelfAttribute("..evaluated_at"),
    )

    class Params:
        next_evaluation_at = None
        needs_evaluation = False
        evaluated_at = None


class KpiScheduleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = KpiSchedule

    # Made by KpiFactory, which passes its KPI.
    organization = factory.SelfAttribute("kpi.organization")


class DependencyFactory(factory.django.DjangoModelFactory):
    """`downstream` depends on `upstream`, two KPIs of one organization (new ones unless given)."""

    class Meta:
        model = Dependency

    organization = factory.SubFactory(OrganizationFactory)
    upstream = factory.SubFactory(KpiFactory, organization=factory.SelfAttribute("..organization"))
    downstream = factory.SubFactory(KpiFactory, organization=factory.SelfAttribute("..organization"))
    kind = Dependency.Kind.DRIVES_DEMAND
