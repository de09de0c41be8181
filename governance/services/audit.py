"""The audit log: every write of every app records one event; a security event repeated within a minute counts
on the first one's row."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Model
from django.utils import timezone
from django_guid import get_guid

from governance import tenancy
from governance.durations import format_duration
from governance.models import (
    AuditEvent,
    Membership,
    Organization,
    SecurityEventRepeat,
    User,
)


def audit_log(
    *,
    org: Organization,
    actor: User | None,
    verb: str,
    obj: Model | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    return _record(
        AuditEvent(
            organization=org,
            actor=actor,
            verb=verb,
            object_type=obj._meta.label_lower if obj is not None else "",
            object_id=str(obj.pk) if obj is not None else "",
            object_repr=_name(obj)[:200] if obj is not None else "",
            before=before,
            after=after,
            request_id=get_guid() or "",
        )
    )


def _name(obj: Model) -> str:
    """How the audit log names an object: its `audit_repr()` where its str() is made for logs, not for people."""
    return obj.audit_repr() if hasattr(obj, "audit_repr") else str(obj)


def audit_security_event(*, verb: str, user: User | None, actor: User | None = None, after: dict) -> None:
    """A login event, filed under every organization the user belongs to, so each one's admins see what concerns
    their people; an event about no known user (a mistyped or guessed email) belongs to no organization."""
    # No request scope covers a login: the user's memberships are read as theirs, each event written as its
    # organization's; one that belongs to no organization needs no scope (governance.rls.UNOWNED).
    with tenancy.scope(user=user.pk if user else None):
        org_ids = list(Membership.objects.filter(user=user).values_list("organization_id", flat=True)) if user else []
    guid = get_guid() or ""
    for org_id in org_ids or [None]:
        with tenancy.scope(organization=org_id):
            _record(
                AuditEvent(
                    organization_id=org_id,
                    actor=actor,
                    verb=verb,
                    object_type=user._meta.label_lower if user else "",
                    object_id=str(user.pk) if user else "",
                    object_repr=str(user)[:200] if user else "",
                    after=after,
                    request_id=guid,
                )
            )


def security_event_key(event: AuditEvent, minute: datetime) -> str:
    """Which security events count as one: same organization, actor (or, for nobody signed in, address), verb and
    object, within one minute."""
    who = f"user:{event.actor_id}" if event.actor_id else f"ip:{(event.after or {}).get('ip') or ''}"
    obj = f"{event.object_type}:{event.object_id}"
    return f"{event.organization_id or '-'}|{who}|{event.verb}|{obj}|{minute:%Y-%m-%dT%H:%M}"[:255]


def _record(event: AuditEvent) -> AuditEvent:
    """Writes the event; a security event that repeats one of the same minute is counted on that one's row
    (SecurityEventRepeat) instead, so that no one can flood the log by repeating a refused request."""
    if not event.verb.startswith("security."):
        event.save()
        return event
    now = timezone.now()
    key = security_event_key(event, now.replace(second=0, microsecond=0))
    repeats = SecurityEventRepeat.objects.filter(key=key)
    if repeats.update(count=F("count") + 1, last_at=now):
        return repeats.select_related("event").get().event
    try:
        with transaction.atomic():
            event.save()
            SecurityEventRepeat.objects.create(organization_id=event.organization_id, key=key, event=event, last_at=now)
    except IntegrityError:  # a concurrent request wrote the minute's first event; this one counts on it
        repeats.update(count=F("count") + 1, last_at=now)
        return repeats.select_related("event").get().event
    return event


def snapshot(obj: Model, fields: Iterable[str]) -> dict:
    """The audit view of an object: plain JSON values, foreign keys as their string form."""
    values = {}
    for name in fields:
        value = getattr(obj, name)
        if isinstance(value, Model):
            value = str(value)
        elif isinstance(value, timedelta):
            value = format_duration(value)
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        values[name] = value
    return values
