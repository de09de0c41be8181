"""The work behind Slack's clicks, off the request (Slack waits 3 seconds), and the message updates."""

from __future__ import annotations

from celery import shared_task
from django.core.exceptions import PermissionDenied, ValidationError

from escalations.models import SlackLink, SlackMessage
from escalations.slack import blocks
from escalations.slack.client import bot, call
from escalations.slack.delivery import refresh, with_context
from escalations.workstreams import services
from governance import tenancy
from governance.models import Membership
from governance.selectors import secrets_remembered


@shared_task
def act(org_id: int, membership_id: int, message_id: int, action: str, reason: str = "", impact: bool = False) -> str:
    """Takes the decision a Slack member clicked through the web's own services; a refusal (four eyes, already
    decided) is told to them in Slack. The services rewrite the messages once committed (refresh_messages)."""
    with tenancy.scope(organization=org_id):
        by = Membership.objects.select_related("user", "organization").get(pk=membership_id, organization_id=org_id)
        message = with_context(SlackMessage.objects.filter(organization_id=org_id)).get(pk=message_id)
        try:
            if action == blocks.ACKNOWLEDGE:
                services.task_acknowledge(task=message.task, by=by)
            elif action in (blocks.APPROVE, blocks.REJECT):
                services.mitigation_path_review(
                    path=message.path, by=by, approve=action == blocks.APPROVE, comment=reason
                )
            elif action == blocks.ANSWER:
                services.dependency_review_answer(
                    task=message.task, by=by, impact=impact, reason=reason, review_id=message.review_id
                )
        except (PermissionDenied, ValidationError) as e:
            text = " ".join(e.messages) if isinstance(e, ValidationError) else str(e)
            tell(message, by, f"Not done: {text}")
            return "refused"
    return "done"


def tell(message: SlackMessage, member: Membership, text: str) -> None:
    """An ephemeral answer in the DM: only the member sees it."""
    link = SlackLink.objects.filter(membership=member).first()
    if link is not None:
        call(bot(message.organization), "chat_postEphemeral", channel=message.channel, user=link.user_id, text=text)


@shared_task
def tell_refusal(org_id: int, membership_id: int, message_id: int, text: str) -> None:
    with tenancy.scope(organization=org_id):
        member = Membership.objects.get(pk=membership_id, organization_id=org_id)
        message = SlackMessage.objects.select_related("organization").get(pk=message_id, organization_id=org_id)
        tell(message, member, text)


@shared_task(autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def refresh_messages(org_id: int, message_ids: list[int]) -> int:
    """Queued by name (escalations.notify.channels.slack.REFRESH_TASK) after a decision: each message about it shows
    the outcome now."""
    with tenancy.scope(organization=org_id), secrets_remembered():  # one read of the bot token for them all
        messages = with_context(SlackMessage.objects.filter(organization_id=org_id, pk__in=message_ids))
        for message in messages:
            refresh(message)
        return len(message_ids)
