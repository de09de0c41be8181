"""The heartbeat a periodic task records, so the health page can tell whether the workers run."""

from __future__ import annotations

from django.utils import timezone

from governance.models import (
    Heartbeat,
)


def heartbeat_record(*, name: str = "worker") -> Heartbeat:
    beat, _ = Heartbeat.objects.update_or_create(name=name, defaults={"beat_at": timezone.now()})
    return beat
