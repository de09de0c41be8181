"""Steerco's own gauges, computed when Prometheus scrapes the workers' metrics endpoint (config.operations.server).

Outbox backlog, escalations due and late, notifications and webhook deliveries pending and failing per channel,
failing data pulls, Celery queue depth, and the sweeps' runs, durations and counts (config.operations.task_signals).
Every figure is an aggregate over all organizations: no label carries an organization, a person or a value. The
counts read every organization's rows, as the beat's sweeps do, so they run in the system scope, which only the
workers' database role may enter (governance.tenancy): that is why this endpoint is served by the worker, not web.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from config.operations import task_signals
from escalations.models import DependencyReview, Notification, WebhookDelivery, Workstream
from governance import tenancy
from scorecards.models import DataSource, StatusChange


def late_after() -> timedelta:
    """A due item the sweep has not taken after two sweep periods is late: the sweep is not keeping up."""
    return 2 * settings.SWEEP_EVERY


class SteercoCollector(Collector):
    def collect(self):
        try:
            with tenancy.scope(system=True):
                yield from self._backlog()
        finally:
            connection.close()  # the scrape's thread must not keep a connection of its own open
        yield from self._tasks()
        yield from self._queues()

    def _backlog(self):
        now = timezone.now()
        outbox = StatusChange.objects.filter(processed_at=None).aggregate(n=Count("pk"), oldest=Min("changed_at"))
        yield GaugeMetricFamily("steerco_outbox_unprocessed", "Status changes not yet processed", outbox["n"])
        yield GaugeMetricFamily(
            "steerco_outbox_oldest_age_seconds",
            "Age of the oldest unprocessed status change (0 when none)",
            (now - outbox["oldest"]).total_seconds() if outbox["oldest"] else 0,
        )
        due = GaugeMetricFamily("steerco_escalations_due", "Escalation steps due now", labels=["kind"])
        late = GaugeMetricFamily(
            "steerco_escalations_late", "Escalation steps due for longer than two sweep periods", labels=["kind"]
        )
        late_before = now - late_after()
        for kind, pending in (
            ("workstream", Workstream.objects.filter(resolved_at=None, waiting_on=None)),
            ("dependency_review", DependencyReview.objects.filter(answered_at=None)),
        ):
            counts = pending.aggregate(
                due=Count("pk", filter=Q(next_escalation_at__lte=now)),
                late=Count("pk", filter=Q(next_escalation_at__lte=late_before)),
            )
            due.add_metric([kind], counts["due"])
            late.add_metric([kind], counts["late"])
        yield due
        yield late
        yield self._deliveries(now)
        yield GaugeMetricFamily(
            "steerco_data_sources_failing",
            "Data sources whose last pull failed",
            DataSource.objects.filter(archived_at=None, failures__gt=0).count(),
        )

    def _deliveries(self, now):
        """pending: not tried yet; retrying: failed, to be tried again; failed: given up."""
        family = GaugeMetricFamily(
            "steerco_deliveries", "Undelivered notifications and webhook posts", labels=["channel", "state"]
        )
        states = {
            "pending": Q(attempts=0, next_attempt_at__isnull=False),
            "retrying": Q(attempts__gt=0, next_attempt_at__isnull=False),
            "failed": Q(next_attempt_at=None),
        }
        aggregates = {state: Count("pk", filter=where) for state, where in states.items()}
        email = Notification.objects.filter(delivered_at=None, channel=Notification.Channel.EMAIL)
        for channel, undelivered in (
            (Notification.Channel.EMAIL.value, email),
            ("webhook", WebhookDelivery.objects.filter(delivered_at=None)),
        ):
            for state, number in undelivered.aggregate(**aggregates).items():
                family.add_metric([channel, state], number)
        return family

    def _tasks(self):
        from config.celery import app

        tasks = sorted(name for name in app.tasks if not name.startswith("celery."))
        figures = task_signals.snapshot(tasks)
        duration = SummaryMetricFamily("steerco_task_duration_seconds", "Time tasks took to run", labels=["task"])
        failures = CounterMetricFamily("steerco_task_failures", "Tasks that raised", labels=["task"])
        items = CounterMetricFamily(
            "steerco_sweep_items", "What sweeps did, from the counts they return", labels=["task", "item"]
        )
        last = GaugeMetricFamily(
            "steerco_task_last_success_timestamp_seconds", "When a task last succeeded (Unix time)", labels=["task"]
        )
        for task, figure in figures.items():
            duration.add_metric([task], figure["runs"], figure["micros"] / 1_000_000)
            failures.add_metric([task], figure["failures"])
            if figure["last_success"]:
                last.add_metric([task], figure["last_success"])
            for item, number in figure["items"].items():
                items.add_metric([task, item], number)
        yield from (duration, failures, items, last)
        yield GaugeMetricFamily("steerco_scrape_timestamp_seconds", "When this scrape was computed", time.time())

    def _queues(self):
        """Messages waiting in the Redis broker's queues (other brokers: no samples)."""
        from config.celery import app

        family = GaugeMetricFamily("steerco_celery_queue_length", "Tasks waiting in the broker", labels=["queue"])
        if not app.conf.broker_url.startswith(("redis://", "rediss://")):
            yield family
            return
        with app.connection_for_read() as conn:
            client = conn.default_channel.client
            for queue in sorted({app.conf.task_default_queue, *(q.name for q in app.amqp.queues.values())}):
                family.add_metric([queue], client.llen(queue))
        yield family
