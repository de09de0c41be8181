"""Factories for the scorecards models besides Kpi and its schedule (tests/factories.py). Each row belongs to the
organization of the KPI (or source) it hangs off, as the services would write it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import factory
from django.utils import timezone

from scorecards.models import (
    CheckIn,
    DataSource,
    DataSourceRun,
    ImportJob,
    KeyResult,
    Measurement,
    MeasurementRevision,
    Objective,
    OwnershipTransfer,
    Scorecard,
    StatusChange,
    SurgeSignal,
)
from tests.factories import KpiFactory, MembershipFactory, OrganizationFactory, TeamFactory, UserFactory

SAME_ORGANIZATION = factory.SelfAttribute("..organization")


class MeasurementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Measurement

    kpi = factory.SubFactory(KpiFactory)
    organization = factory.SelfAttribute("kpi.organization")
    at = factory.Sequence(lambda n: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=n))
    value = 1000.0
    source = "api"


class MeasurementRevisionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MeasurementRevision

    measurement = factory.SubFactory(MeasurementFactory)
    organization = factory.SelfAttribute("measurement.organization")
    value = 900.0
    source = "api"
    ingested_at = factory.LazyFunction(timezone.now)


class DataSourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DataSource

    organization = factory.SubFactory(OrganizationFactory)
    key = factory.Sequence(lambda n: f"source-{n}")
    kind = "sql"
    every = timedelta(hours=1)
    config = factory.LazyFunction(lambda: {"dsn_secret": "warehouse_dsn", "pulls": []})


class DataSourceRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DataSourceRun

    source = factory.SubFactory(DataSourceFactory)
    organization = factory.SelfAttribute("source.organization")
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyAttribute(lambda run: run.started_at + timedelta(seconds=2))
    rows = 0


class ImportJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ImportJob

    organization = factory.SubFactory(OrganizationFactory)
    filename = "measurements.csv"
    content = b"kpi,at,value\n"


class StatusChangeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StatusChange

    kpi = factory.SubFactory(KpiFactory)
    organization = factory.SelfAttribute("kpi.organization")
    old = "on_track"
    new = "off_track"
    value = 700.0
    thresholds = factory.LazyAttribute(lambda change: change.kpi.thresholds)
    reason = "700 leads < critical 800"
    changed_at = factory.LazyFunction(timezone.now)


class SurgeSignalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SurgeSignal

    kpi = factory.SubFactory(KpiFactory)
    organization = factory.SelfAttribute("kpi.organization")
    at = factory.LazyFunction(timezone.now)
    previous = 100.0
    current = 150.0
    change = 0.5


class OwnershipTransferFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OwnershipTransfer

    kpi = factory.SubFactory(KpiFactory)
    organization = factory.SelfAttribute("kpi.organization")
    from_owner = factory.SelfAttribute("kpi.owner")
    to_owner = factory.SubFactory(MembershipFactory, organization=SAME_ORGANIZATION)
    reason = "moves to the growth team"
    requested_by = factory.SelfAttribute("from_owner.user")


class ObjectiveFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Objective

    organization = factory.SubFactory(OrganizationFactory)
    key = factory.Sequence(lambda n: f"o.{n}")
    title = factory.Sequence(lambda n: f"Objective {n}")
    owner = factory.SubFactory(MembershipFactory, organization=SAME_ORGANIZATION)
    team = factory.SubFactory(TeamFactory, organization=SAME_ORGANIZATION)
    period_start = date(2026, 1, 1)
    period_end = date(2026, 12, 31)


class KeyResultFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = KeyResult

    objective = factory.SubFactory(ObjectiveFactory)
    organization = factory.SelfAttribute("objective.organization")
    key = factory.Sequence(lambda n: f"kr.{n}")
    title = factory.Sequence(lambda n: f"Key result {n}")
    owner = factory.SelfAttribute("objective.owner")
    start = 0.0
    target = 100.0


class CheckInFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CheckIn

    key_result = factory.SubFactory(KeyResultFactory)
    organization = factory.SelfAttribute("key_result.organization")
    value = 40.0
    by = factory.SubFactory(UserFactory)


class ScorecardFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Scorecard
        skip_postgeneration_save = True

    organization = factory.SubFactory(OrganizationFactory)
    key = factory.Sequence(lambda n: f"card-{n}")
    name = factory.Sequence(lambda n: f"Scorecard {n}")

    @factory.post_generation
    def kpis(self, create: bool, kpis: list | None, **kwargs) -> None:
        if create and kpis:
            self.kpis.set(kpis)
