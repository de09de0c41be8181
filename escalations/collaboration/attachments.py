"""Attachments (evidence): checked by size and content on upload, stored through the "attachments" storage,
hidden at once when deleted (by a person, or because their parent is gone) and purged after the retention."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from escalations.collaboration.filetypes import HEAD_BYTES, sniff
from escalations.collaboration.models import Attachment
from escalations.collaboration.targets import TARGETS, target_of
from governance.durations import format_duration
from governance.models import Membership
from governance.services.audit import audit_log

log = logging.getLogger(__name__)
PURGE_BATCH = 500


def _size_text(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{max(1, n // 1024)} KB"


@transaction.atomic
def attachment_add(*, by: Membership, target: Model, upload: UploadedFile) -> Attachment:
    name = (upload.name or "file").replace("/", "_").replace("\\", "_")[-200:]
    if upload.size > settings.ATTACHMENT_MAX_BYTES:
        limit = _size_text(settings.ATTACHMENT_MAX_BYTES)
        raise ValidationError(f"{name} is {_size_text(upload.size)}; attachments may be at most {limit}.")
    if upload.size == 0:
        raise ValidationError(f"{name} is empty.")
    upload.seek(0)
    head = upload.read(HEAD_BYTES)
    upload.seek(0)
    try:
        mime = sniff(name, head)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    attachment = Attachment(
        organization=by.organization,
        target_type=target_of(target).content_type(),
        target_id=target.pk,
        name=name,
        content_type=mime,
        size=upload.size,
        uploaded_by=by,
    )
    attachment.file.save(name, upload, save=False)
    try:
        attachment.save()
        audit_log(
            org=by.organization,
            actor=by.user,
            verb="attachment.added",
            obj=attachment,
            after={"name": name, "size": upload.size, "content_type": mime},
        )
    except Exception:
        attachment.file.delete(save=False)  # no row, no file
        raise
    return attachment


def may_delete(attachment: Attachment, membership: Membership) -> bool:
    return attachment.deleted_at is None and (attachment.uploaded_by_id == membership.pk or membership.is_admin)


@transaction.atomic
def attachment_delete(*, attachment: Attachment, by: Membership) -> None:
    if not may_delete(attachment, by):
        raise PermissionDenied("Only its uploader or an admin may delete an attachment.")
    attachment.deleted_at = timezone.now()
    attachment.save(update_fields=["deleted_at"])
    audit_log(
        org=attachment.organization,
        actor=by.user,
        verb="attachment.deleted",
        obj=attachment,
        before={"name": attachment.name},
        after={"purge_after": format_duration(settings.ATTACHMENT_RETENTION)},
    )


def attachments_purge(*, now=None) -> int:
    """The retention sweep: hides the attachments of deleted parents, then removes the files and rows deleted longer
    than ATTACHMENT_RETENTION ago. Idempotent; a file already gone is no error."""
    now = now or timezone.now()
    for target in TARGETS.values():
        live = target.model._default_manager.values("pk")
        Attachment.objects.filter(target_type=target.content_type(), deleted_at=None).exclude(
            target_id__in=live
        ).update(deleted_at=now)
    due = list(Attachment.objects.filter(deleted_at__lte=now - settings.ATTACHMENT_RETENTION)[:PURGE_BATCH])
    for attachment in due:
        attachment.file.delete(save=False)
        # Guarded: a second sweep that purged the same row first makes this one a no-op.
        Attachment.objects.filter(pk=attachment.pk).delete()
    if due:
        log.info("Purged %d attachments", len(due))
    return len(due)
