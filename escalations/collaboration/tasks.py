from __future__ import annotations

from celery import shared_task

from escalations.collaboration.attachments import attachments_purge
from governance import tenancy


@shared_task
def purge_attachments() -> dict:
    with tenancy.for_sweep(None):
        return {"purged": attachments_purge()}
