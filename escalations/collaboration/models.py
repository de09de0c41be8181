"""Conversation around the numbers: comments, attachments (evidence) and read-only share links.

Comments and attachments hang on any organization-owned object by content type and id (collaboration.targets
names the kinds that may carry them), so a new kind of target is one line there, not a new foreign key here.
"""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.core.files.storage import storages
from django.db import models
from django.utils.timezone import now

from governance.models import Membership, Organization, TenantQuerySet, User
from scorecards.models import Scorecard


def attachment_storage():
    """The "attachments" alias of STORAGES: the filesystem by default, S3-compatible (MinIO) in docker-compose.
    A callable, so that the migration does not freeze the backend and tests may swap it."""
    return storages["attachments"]


class Comment(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    target_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+")
    target_id = models.BigIntegerField()
    author = models.ForeignKey(Membership, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()  # Markdown as written; emptied when the comment is deleted (the audit log keeps it)
    created_at = models.DateTimeField(default=now)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["organization", "target_type", "target_id"], name="comment_target_idx")]

    def __str__(self) -> str:
        return f"comment {self.pk} on {self.target_type_id}:{self.target_id}"


class Attachment(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    target_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+")
    target_id = models.BigIntegerField()
    file = models.FileField(upload_to="attachments/%Y/%m/", storage=attachment_storage, max_length=300)
    name = models.CharField(max_length=200)  # the uploader's file name, shown and sent back on download
    content_type = models.CharField(max_length=120)  # as sniffed from the content, never the browser's claim
    size = models.PositiveBigIntegerField()
    uploaded_by = models.ForeignKey(Membership, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(default=now)
    # Deleted by a person or with its parent: hidden at once, the file purged after ATTACHMENT_RETENTION.
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-uploaded_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "target_type", "target_id"], name="attachment_target_idx"),
            models.Index(fields=["deleted_at"], name="attachment_deleted_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class ShareLink(models.Model):
    """A read-only link to one scorecard for people without an account (board members); its token is stored as a
    digest only, its optional passcode with Django's password hashers."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    scorecard = models.ForeignKey(Scorecard, on_delete=models.CASCADE, related_name="+")
    label = models.CharField(max_length=200)
    token_hash = models.CharField(max_length=64, unique=True)
    passcode_hash = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.label

    def state(self, at) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= at else "active"


class ShareLinkView(models.Model):
    """One opening of a share link, granted or refused: when, from which address (a keyed hash, not the address),
    and the member when one was signed in."""

    class Outcome(models.TextChoices):
        SHOWN = "shown", "Shown"
        EXPIRED = "expired", "Refused: expired"
        REVOKED = "revoked", "Refused: revoked"
        WRONG_PASSCODE = "wrong_passcode", "Refused: wrong passcode"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    link = models.ForeignKey(ShareLink, on_delete=models.CASCADE, related_name="views")
    viewed_at = models.DateTimeField(default=now)
    ip_hash = models.CharField(max_length=64)
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    outcome = models.CharField(max_length=20, choices=Outcome.choices)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-viewed_at", "-id"]
        indexes = [models.Index(fields=["organization", "link", "viewed_at"], name="sharelinkview_link_idx")]

    def __str__(self) -> str:
        return f"{self.link_id} {self.outcome} at {self.viewed_at}"
