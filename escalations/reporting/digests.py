"""The weekly digest: every Monday at 08:00 in the organization's timezone, an executive gets the scorecard's week
(status counts now and a week ago, what changed, what awaits a decision, what is stale) and anyone with open items
gets theirs (tasks, actions, own KPIs in an episode); an executive who owns items gets both in one message.

Once per recipient and week, guaranteed by the database: the dedup key names the organization's local ISO week,
under Notification's unique (dedup_key, channel), so two beats, a redelivered task or a retried batch never write
a second digest. A sweep that runs late (workers down over the send time) writes that week's digest once, when it
runs; a week missed entirely is not replayed. Who gets one is decided as of the send time (members by then, items
opened by then), so a task arriving on Wednesday does not start a "weekly" digest on Wednesday.

The in-app notification carries a short summary; the email row carries the digest's content as JSON in its body,
rendered when the delivery sweep sends it (`digest_email.render_email`), so a retried send is the same message. The
member switches either off on the notification settings page (kind "weekly_digest")."""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from functools import reduce
from operator import and_

from django.db import transaction
from django.db.models import (
    CharField,
    DateTimeField,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Value,
)
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from escalations.models import (
    MitigationAction,
    Notification,
    NotificationPreference,
    SlackLink,
    Task,
    Workstream,
)
from escalations.notify.channels import CHANNELS
from escalations.notify.fanout import Announcement, Message, notify_all
from escalations.notify.formats import DIGEST_KIND
from escalations.reporting.digest_content import LIVE_PATHS, OPEN_TASKS, digest_of, owner_items, week_summaries
from escalations.reporting.digest_slots import Slot, by_zone, slot_at
from governance.models import Membership, Organization, Role

SUMMARY_ROLES = (Role.EXECUTIVE,)  # who gets the scorecard's week; everyone may get their own items


ORG_BATCH = 50  # organizations per transaction


def send_digests(*, now: datetime | None = None, org_id: int | None = None) -> int:
    """Writes every digest due now (in-app and email rows; `deliver_notifications` sends the emails). Returns how
    many digests it wrote; a constant number of queries per batch of organizations."""
    now = now or timezone.now()
    slots = _due_slots(now, org_id)
    if not slots:
        return 0
    pending = _candidates(slots)
    if org_id:
        pending = pending.filter(organization_id=org_id)
    org_ids = sorted(set(pending.order_by().values_list("organization_id", flat=True)))
    written = 0
    for start in range(0, len(org_ids), ORG_BATCH):
        with transaction.atomic():
            # Two sweeps split the organizations instead of both computing the same digests (the dedup key is what
            # guarantees once). NO KEY: rows that reference the organization can still be inserted meanwhile.
            claimed = list(
                Organization.objects.filter(pk__in=org_ids[start : start + ORG_BATCH])
                .order_by("pk")
                .select_for_update(skip_locked=True, no_key=True)
            )
            if claimed:
                written += _write_batch(claimed, slots, now)
    return written


def _due_slots(now: datetime, org_id: int | None) -> dict[str, Slot]:
    """Timezone name -> its due slot, for the zones the organizations use (one query, then Python per zone)."""
    zones = Organization.objects.order_by().values_list("timezone", flat=True).distinct()
    if org_id:
        zones = zones.filter(pk=org_id)
    slots = {name: slot_at(zoneinfo.ZoneInfo(name), now) for name in zones}
    return {name: slot for name, slot in slots.items() if slot is not None}


def _candidates(slots: dict[str, Slot]) -> QuerySet[Membership]:
    """Members due a digest: active by the send time, an executive or with open items opened by then, not sent
    this week's yet, and not opted out of it on every channel."""
    send_at = OuterRef("send_at")
    tasks = Task.objects.filter(assignee=OuterRef("pk"), state__in=OPEN_TASKS, created_at__lte=send_at)
    actions = MitigationAction.objects.filter(
        owner=OuterRef("pk"),
        done_at=None,
        path__state__in=LIVE_PATHS,
        path__workstream__resolved_at=None,
        path__filed_at__lte=send_at,
    )
    episodes = Workstream.objects.filter(kpi__owner=OuterRef("pk"), resolved_at=None, opened_at__lte=send_at)
    sent = Notification.objects.filter(dedup_key=OuterRef("digest_key"), kind=DIGEST_KIND)
    off = NotificationPreference.objects.filter(membership=OuterRef("pk"), kind=DIGEST_KIND, enabled=False)
    # Slack reaches linked members only (its available_to): for the others it is as good as switched off.
    unlinked = ~Exists(SlackLink.objects.filter(membership=OuterRef("pk")))
    channel_off = {c: Q(Exists(off.filter(channel=c))) for c in CHANNELS}
    channel_off[Notification.Channel.SLACK] |= Q(unlinked)
    all_off = reduce(and_, channel_off.values())
    key = Concat(
        Cast("organization_id", CharField()),
        Value(":digest:"),
        by_zone(slots, "week", CharField()),
        Value(":"),
        Cast("pk", CharField()),
        output_field=CharField(),
    )
    return (
        Membership.objects.filter(organization__timezone__in=list(slots), is_active=True, user__is_active=True)
        .annotate(send_at=by_zone(slots, "send_at", DateTimeField()), digest_key=key)
        .filter(created_at__lte=F("send_at"))
        .filter(Q(role__in=SUMMARY_ROLES) | Exists(tasks) | Exists(actions) | Exists(episodes))
        .exclude(Exists(sent))
        .exclude(all_off)
    )


def _write_batch(orgs: list[Organization], slots: dict[str, Slot], now: datetime) -> int:
    by_id = {o.pk: o for o in orgs}
    recipients = list(_candidates(slots).filter(organization__in=orgs).select_related("user").order_by("pk"))
    if not recipients:
        return 0
    summary_orgs = [by_id[i] for i in sorted({m.organization_id for m in recipients if m.role in SUMMARY_ROLES})]
    summaries = week_summaries(summary_orgs, slots, now) if summary_orgs else {}
    items = owner_items(recipients, by_id, now)
    announcements = []
    for m in recipients:
        org = by_id[m.organization_id]
        slot = slots[org.timezone]
        digest = digest_of(m, org, slot, summaries.get(org.pk) if m.role in SUMMARY_ROLES else None, items.get(m.pk))
        if digest is not None:
            message = Message(DIGEST_KIND, digest["subject"], digest["summary_text"], digest["url"], payload=digest)
            # notify_all ends the key with the member's id: "<org>:digest:<week>:<member>", as _candidates reads it.
            announcements.append(Announcement([m], message, f"{org.pk}:digest:{slot.week}"))
    notify_all(announcements, now=now)
    return len(announcements)
