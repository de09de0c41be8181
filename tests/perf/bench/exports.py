"""`make bench`: the steering pack of 50 red KPIs as PDF, PowerPoint and Excel, generated side by side in one run.

Builds a throwaway test database with one organization holding 50 red KPIs (90 daily points each, an open
workstream with a path and two actions, a decision in the session), then renders the pack in the three formats in
alternation and prints the medians, the sizes and two ratios (deck to PDF, PDF to spreadsheet). Figures are only
comparable within one run.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import date, timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from escalations.decisions.pack_files import render_pack_as  # noqa: E402
from escalations.models import Decision, MitigationAction, MitigationPath, ReviewSession, Workstream  # noqa: E402
from governance import tenancy  # noqa: E402
from governance.models import Role  # noqa: E402
from scorecards.models import Kpi, Measurement, Status  # noqa: E402
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory  # noqa: E402
from tests.perf.bench.report import record  # noqa: E402

KPIS, DAYS, ROUNDS = 50, 90, 3
FORMATS = ("pdf", "pptx", "xlsx")


def build() -> ReviewSession:
    org = OrganizationFactory(slug="bench-pack")
    executive = MembershipFactory(organization=org, role=Role.EXECUTIVE)
    team = TeamFactory(organization=org)
    now = timezone.now()
    kpis = Kpi.objects.bulk_create(
        Kpi(
            organization=org,
            key=f"k.{i}",
            name=f"KPI {i:02}",
            team=team,
            owner=executive,
            unit="units",
            target_value=100,
            thresholds={"warning": 90, "critical": 80},
            cadence=timedelta(days=1),
            stale_after=timedelta(days=3),
            evaluate_every=timedelta(hours=1),
            pending_for=timedelta(0),
            keep_for=timedelta(0),
            status=Status.OFF_TRACK if i % 2 else Status.AT_RISK,
            last_value=75,
            last_measured_at=now,
            reason="Below the critical line for three days.",
        )
        for i in range(KPIS)
    )
    Measurement.objects.bulk_create(
        (
            Measurement(organization=org, kpi=k, at=now - timedelta(days=d), value=70 + (d * 7 + k.pk) % 25)
            for k in kpis
            for d in range(DAYS)
        ),
        batch_size=5000,
    )
    session = ReviewSession.objects.create(organization=org, title="Bench review", started_by=executive.user)
    for k in kpis:
        ws = Workstream.objects.create(organization=org, kpi=k, severity=k.status, opened_at=now - timedelta(days=3))
        path = MitigationPath.objects.create(
            organization=org,
            workstream=ws,
            root_cause="Supplier delay",
            expected_recovery=date.today() + timedelta(days=14),
            filed_by=executive.user,
        )
        MitigationAction.objects.bulk_create(
            MitigationAction(organization=org, path=path, description=f"Action {n}", owner=executive, due=date.today())
            for n in range(2)
        )
        Decision.objects.create(
            organization=org,
            kind=Decision.Kind.RISK_ACCEPTED,
            kpi=k,
            session=session,
            decided_by=executive.user,
            reason="Accepted until the supplier delivers.",
            kpi_status=k.status,
        )
    return session


def main() -> None:
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0)
    old = runner.setup_databases()
    try:
        with tenancy.scope(system=True):
            session = build()
            for fmt in FORMATS:  # warm templates, fonts and imports
                render_pack_as(fmt, session=session, viewer=None)
            timings: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
            sizes: dict[str, int] = {}
            for _ in range(ROUNDS):
                for fmt in FORMATS:
                    start = time.perf_counter()
                    sizes[fmt] = len(render_pack_as(fmt, session=session, viewer=None))
                    timings[fmt].append((time.perf_counter() - start) * 1000)
        medians = {fmt: statistics.median(t) for fmt, t in timings.items()}
        print(f"steering pack of {KPIS} red KPIs, {connection.vendor}, median of {ROUNDS} rounds:")
        for fmt in FORMATS:
            record("exports", f"pack as {fmt.upper()}, {KPIS} red KPIs", medians[fmt], "ms")
            record("exports", f"pack as {fmt.upper()}, size", sizes[fmt] / 1024, "KiB")
        record("exports", "ratio PPTX / PDF", medians["pptx"] / medians["pdf"], "x")
        record("exports", "ratio PDF / XLSX", medians["pdf"] / medians["xlsx"], "x")
    finally:
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
