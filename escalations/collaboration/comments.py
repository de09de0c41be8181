"""Comments: written, edited and deleted here only, each audited; mentions notify through the per-person
channels (escalations.notify.fanout), once per comment and member however often the comment is edited."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from escalations.collaboration.markdown import mentioned_emails
from escalations.collaboration.models import Comment
from escalations.collaboration.targets import target_of
from escalations.notify.fanout import Message, notify
from governance.models import Membership
from governance.services.audit import audit_log

MAX_LENGTH = 10_000


def _clean(body: str) -> str:
    body = body.strip()
    if not body:
        raise ValidationError("Write something first.")
    if len(body) > MAX_LENGTH:
        raise ValidationError(f"A comment holds at most {MAX_LENGTH:,} characters; this one has {len(body):,}.")
    return body


@transaction.atomic
def comment_create(*, author: Membership, target: Model, body: str) -> Comment:
    body = _clean(body)
    kind = target_of(target)
    comment = Comment.objects.create(
        organization=author.organization,
        target_type=kind.content_type(),
        target_id=target.pk,
        author=author,
        body=body,
    )
    audit_log(org=author.organization, actor=author.user, verb="comment.created", obj=comment, after={"body": body})
    _notify_mentions(comment, target)
    return comment


def may_edit(comment: Comment, membership: Membership, at=None) -> bool:
    at = at or timezone.now()
    return (
        comment.deleted_at is None
        and comment.author_id == membership.pk
        and at - comment.created_at <= settings.COMMENT_EDIT_WINDOW
    )


def may_delete(comment: Comment, membership: Membership) -> bool:
    return comment.deleted_at is None and (comment.author_id == membership.pk or membership.is_admin)


@transaction.atomic
def comment_edit(*, comment: Comment, by: Membership, body: str) -> Comment:
    if not may_edit(comment, by):
        minutes = int(settings.COMMENT_EDIT_WINDOW.total_seconds() // 60)
        raise PermissionDenied(f"Only its author may edit a comment, within {minutes} minutes of writing it.")
    body = _clean(body)
    before = comment.body
    comment.body, comment.edited_at = body, timezone.now()
    comment.save(update_fields=["body", "edited_at"])
    audit_log(
        org=comment.organization,
        actor=by.user,
        verb="comment.edited",
        obj=comment,
        before={"body": before},
        after={"body": body},
    )
    _notify_mentions(comment, comment_target(comment))
    return comment


@transaction.atomic
def comment_delete(*, comment: Comment, by: Membership) -> Comment:
    """Leaves a tombstone ("deleted by X on ..."); the text itself is kept only in the audit log."""
    if not may_delete(comment, by):
        raise PermissionDenied("Only its author or an admin may delete a comment.")
    before = comment.body
    comment.body, comment.deleted_at, comment.deleted_by = "", timezone.now(), by.user
    comment.save(update_fields=["body", "deleted_at", "deleted_by"])
    audit_log(org=comment.organization, actor=by.user, verb="comment.deleted", obj=comment, before={"body": before})
    return comment


def comment_target(comment: Comment) -> Model:
    return comment.target_type.get_object_for_this_type(pk=comment.target_id)


def _notify_mentions(comment: Comment, target: Model) -> None:
    emails = mentioned_emails(comment.body)
    if not emails:
        return
    # Members of this organization only: an address of anybody else is just text.
    candidates = (
        Membership.objects.filter(organization=comment.organization, is_active=True, user__email__in=emails)
        .exclude(pk=comment.author_id)
        .select_related("user")
    )
    kind = target_of(target)
    # Nor anyone who may not see the target (a KPI shown to its viewers only): the text would tell them of it.
    mentioned = [m for m in candidates if kind.visible(m).filter(pk=target.pk).exists()]
    author = comment.author.user.name or comment.author.user.email
    url = f"{settings.SITE_URL}{kind.page(target)}#comment-{comment.pk}"
    about = kind.describe(target)
    message = Message(
        kind="mention",
        subject=f"{author} mentioned you on {about}",
        body=f"{author} mentioned you in a comment on {about}:\n\n{comment.body}\n\n{url}",
        url=url,
    )
    # The key names the comment, and fanout adds the member: an edit that keeps a mention notifies nobody again.
    notify(recipients=mentioned, message=message, dedup_key=f"comment:{comment.pk}:mention")
