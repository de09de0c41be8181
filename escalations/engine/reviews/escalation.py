"""Unanswered dependency reviews escalate by the policy snapshot taken when they opened, as workstreams do."""

from __future__ import annotations

from datetime import datetime

from django.db import connection, transaction

from escalations.engine.blocks import OPEN
from escalations.engine.escalation import due_steps, escalated_text, step_key
from escalations.engine.resolver import Resolver, admins
from escalations.engine.reviews.signals import BATCH_SIZE, kpi_url
from escalations.models import (
    DependencyReview,
    Task,
)
from escalations.notify.fanout import Announcement, Message, notify_all
from governance import formats
from governance.models import Membership


def advance_reviews(*, now: datetime, org_id: int | None) -> int:
    """advance_escalations for dependency reviews: every unanswered review whose next step is due, a batch at a
    time, each step at its own time; returns how many levels were notified."""
    notified = 0
    while True:
        with transaction.atomic():
            due = DependencyReview.objects.filter(answered_at=None, next_escalation_at__lte=now)
            if org_id:
                due = due.filter(organization_id=org_id)
            batch = list(
                due.select_related("organization", "kpi__team__lead__user", "kpi__owner__user")
                .order_by("next_escalation_at", "id")
                .select_for_update(skip_locked=True, of=("self",), no_key=True)[:BATCH_SIZE]
            )
            if not batch:
                return notified
            resolve, tasks, announcements = Resolver(), [], []
            told: dict[int, list[Membership]] = {}  # each organization's admins, read once per batch
            for review in batch:
                notified += _advance(review, now, resolve, tasks, announcements)
                if review.next_escalation_at is None and review.exhausted_at is not None:
                    if review.organization_id not in told:
                        told[review.organization_id] = admins(review.organization_id)
                    announcements.append(_exhausted(review, told[review.organization_id]))
            _supersede(tasks)
            Task.objects.bulk_create(tasks, ignore_conflicts=True)
            notify_all(announcements, now=now)
            _save(batch, ["level", "escalation_pass", "renotify", "next_escalation_at", "exhausted_at", "history"])


def _save(reviews: list[DependencyReview], fields: list[str]) -> None:
    """bulk_update in one statement. Django's CASE per row and field took ~3 ms a review to build (8 s for the
    benchmark's 2,792); on PostgreSQL an UPDATE joins the batch's values as arrays instead."""
    if connection.vendor != "postgresql":
        DependencyReview.objects.bulk_update(reviews, fields)
        return
    columns = [DependencyReview._meta.get_field(name) for name in fields]
    arrays = ", ".join(["%s::bigint[]", *(f"%s::{c.db_type(connection)}[]" for c in columns)])
    names = ", ".join(c.column for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {DependencyReview._meta.db_table} AS r SET "
            f"{', '.join(f'{c.column} = v.{c.column}' for c in columns)} "
            f"FROM unnest({arrays}) AS v(id, {names}) WHERE r.id = v.id",
            [
                [r.pk for r in reviews],
                *([c.get_db_prep_save(getattr(r, c.attname), connection) for r in reviews] for c in columns),
            ],
        )


def _advance(
    review: DependencyReview, now: datetime, resolve: Resolver, tasks: list[Task], announcements: list[Announcement]
) -> int:
    """sweeps._advance for a review: runs every step due by `now`, each at its own time."""
    kpi, org, notified = review.kpi, review.organization, 0
    tz = org.tzinfo
    steps = due_steps(
        review,
        kpi,
        now,
        resolve,
        skipped=lambda step, text: _log(review, step.at, "level_skipped", text),
        exhausted=lambda at: _log(review, at, "exhausted", "Escalation exhausted: the review is still unanswered"),
        # The downstream owner answers the review: its escalation goes to someone else.
        exclude={kpi.owner.user_id: "must answer this review"},
    )
    for step, found in steps:
        key, people = step_key(step), found.people
        tasks += [
            Task(
                organization_id=review.organization_id,
                kind=Task.Kind.ESCALATION,
                assignee=person,
                kpi=kpi,
                review=review,
                level=step.level,
                escalation_pass=step.pass_,
                due_at=step.then,
                created_at=now,
                dedup_key=f"{review.organization_id}:{kpi.pk}:review{review.pk}:{Task.Kind.ESCALATION}:{key}:{person.pk}",
            )
            for person in people
        ]
        _log(review, step.at, "escalated", escalated_text(step, found))
        announcements.append(
            Announcement(
                recipients=people,
                message=Message(
                    kind=Task.Kind.ESCALATION,
                    subject=f"Escalation: the dependency review of {kpi.name} is unanswered",
                    body=(
                        f"Upstream changes reached {kpi.name} on {formats.when(review.opened_at, tz)}; its owner "
                        f"{kpi.owner.user.name} was to answer by {formats.when(review.due_at, tz)}. Get it answered, "
                        "or answer it yourself from your task."
                    ),
                    url=kpi_url(kpi, org),
                ),
                dedup_key=f"{review.organization_id}:{kpi.pk}:review{review.pk}:{key}",
            )
        )
        notified += 1
    return notified


def _log(review: DependencyReview, at: datetime, verb: str, text: str) -> None:
    review.history = [*review.history, {"at": at.isoformat(), "verb": verb, "text": text}]


def _exhausted(review: DependencyReview, people: list[Membership]) -> Announcement:
    return Announcement(
        recipients=people,
        message=Message(
            kind="exhausted",
            subject=f"Escalation exhausted: the dependency review of {review.kpi.name}",
            body=f"Every level was notified and nobody answered whether upstream changes affect {review.kpi.name}.",
            url=kpi_url(review.kpi, review.organization),
        ),
        dedup_key=f"{review.organization_id}:{review.kpi_id}:review{review.pk}:exhausted",
    )


def _supersede(tasks: list[Task]) -> None:
    """A person escalated to again on a review keeps one open escalation task there: the newest."""
    again = {(t.review.pk, t.assignee_id) for t in tasks}
    older = Task.objects.filter(
        review_id__in={review for review, _ in again}, kind=Task.Kind.ESCALATION, state__in=OPEN
    ).values_list("pk", "review_id", "assignee_id")
    ids = [pk for pk, review, person in older if (review, person) in again]
    Task.objects.filter(pk__in=ids).update(state=Task.State.CANCELLED)
