"""What a Slack message about a task, a path or a review shows (Block Kit), and the modals that ask for a reason.

The buttons follow the same authority as the web's: Approve and Reject only for whom escalations.engine.authority
allows (never the path's author: four eyes; a self-approval, allowed only when nobody else may decide, is taken on
the web where its label is shown), Acknowledge only for the task's assignee, Answer review only for who may answer.
Once decided, the message says the outcome and loses its buttons."""

from __future__ import annotations

import json

from django.conf import settings
from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    RadioButtonsElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from escalations.engine import authority as deciding
from escalations.models import MitigationPath, SlackMessage, Task
from escalations.workstreams.services import may_answer
from governance import formats
from scorecards.models import Kpi

ACKNOWLEDGE, APPROVE, REJECT, ANSWER = "acknowledge", "approve", "reject", "answer"
PATH_REVIEW, REVIEW_ANSWER = "path_review", "review_answer"  # the modals' callback ids
REASON_BLOCK, REASON_INPUT, IMPACT_BLOCK, IMPACT_INPUT = "reason", "reason_input", "impact", "impact_input"


def kpi_of(message: SlackMessage) -> Kpi | None:
    if message.path_id:
        return message.path.workstream.kpi
    if message.review_id:
        return message.review.kpi
    return message.task.kpi if message.task_id else None


def outcome(message: SlackMessage) -> str:
    """What was decided, in one line, or "" while something is still asked."""
    path, review, task = message.path, message.review, message.task
    if path is not None and path.state != MitigationPath.State.SUBMITTED:
        verdict = "Approved" if path.state == MitigationPath.State.APPROVED else "Rejected"
        return f"{verdict} by {path.reviewed_by.name if path.reviewed_by else 'someone'}: {path.review_comment}"
    if review is not None and not review.is_open:
        said = "impact" if review.answer == review.Answer.IMPACT else "no impact"
        who = review.answered_by.name if review.answered_by else "someone"
        return f"Answered by {who}: {said}" + (f": {review.answer_reason}" if review.answer_reason else "")
    if task is not None and task.state == Task.State.ACKNOWLEDGED and path is None and review is None:
        return f"Acknowledged by {task.assignee.user.name}"
    if task is not None and not task.is_open and path is None and review is None:
        return f"Task {task.get_state_display().lower()}"
    return ""


def buttons(message: SlackMessage) -> list[ButtonElement]:
    me, task, path, review = message.recipient, message.task, message.path, message.review
    value = str(message.pk)
    shown = []
    if task is not None and task.state == Task.State.OPEN and task.assignee_id == me.pk:
        shown.append(ButtonElement(text="Acknowledge", action_id=ACKNOWLEDGE, value=value))
    if path is not None and path.state == MitigationPath.State.SUBMITTED:
        allowed = deciding.authority("path_review", by=me, path=path)
        if allowed and not allowed.self_approved:
            shown.append(ButtonElement(text="Approve", action_id=APPROVE, value=value, style="primary"))
            shown.append(ButtonElement(text="Reject", action_id=REJECT, value=value, style="danger"))
    if review is not None and review.is_open and task is not None and task.is_open and may_answer(task, me):
        shown.append(ButtonElement(text="Answer review", action_id=ANSWER, value=value))
    if message.url:
        shown.append(ButtonElement(text="Open in Steerco", action_id="open", url=settings.SITE_URL + message.url))
    return shown


def message_blocks(message: SlackMessage) -> list:
    blocks: list = [SectionBlock(text=MarkdownTextObject(text=f"*{_escape(message.subject)}*"))]
    kpi = kpi_of(message)
    if kpi is not None:
        value, target = formats.value(kpi.last_value, kpi.unit), formats.value(kpi.target_value, kpi.unit)
        fields = [
            f"*KPI*\n{_escape(kpi.name)}",
            f"*Status*\n{kpi.get_status_display()}",
            f"*Value / target*\n{value} / {target}",
            f"*Owner*\n{_escape(kpi.owner.user.name)}",
        ]
        blocks.append(SectionBlock(fields=[MarkdownTextObject(text=f) for f in fields]))
    if message.task_id:
        task = message.task
        due = formats.when(task.due_at, message.organization.tzinfo)
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"Asked: {task.get_kind_display()}, by {due}")]))
    if message.path_id:
        path = message.path
        text = f"*Mitigation path* ({path.get_state_display().lower()}): {_escape(path.root_cause)}"
        blocks.append(SectionBlock(text=MarkdownTextObject(text=text[:2900])))
    if done := outcome(message):
        blocks.append(SectionBlock(text=MarkdownTextObject(text=f":white_check_mark: {_escape(done)}"[:2900])))
        if message.url:
            url = settings.SITE_URL + message.url
            blocks.append(ActionsBlock(elements=[ButtonElement(text="Open in Steerco", action_id="open", url=url)]))
    elif shown := buttons(message):
        blocks.append(ActionsBlock(block_id="steerco", elements=shown))
    return [b.to_dict() for b in blocks]


def reason_modal(message: SlackMessage, action: str) -> dict:
    """The modal an Approve, Reject or Answer review button opens: the reason is required, as on the web."""
    meta = json.dumps({"message": message.pk, "action": action})
    reason = InputBlock(
        block_id=REASON_BLOCK,
        label="Reason",
        element=PlainTextInputElement(action_id=REASON_INPUT, multiline=True, max_length=2000),
        optional=action == ANSWER,  # "impact" needs none; the service refuses "no impact" without one
    )
    if action == ANSWER:
        impact = InputBlock(
            block_id=IMPACT_BLOCK,
            label="Is your KPI affected?",
            element=RadioButtonsElement(
                action_id=IMPACT_INPUT,
                options=[
                    Option(value="impact", label="Impact: open a preventive workstream"),
                    Option(value="no_impact", label="No impact (give the reason)"),
                ],
            ),
        )
        blocks, title, submit = [impact, reason], "Answer review", "Answer"
    else:
        verb = "Approve" if action == APPROVE else "Reject"
        blocks, title, submit = [reason], f"{verb} the path", verb
    view = View(
        type="modal",
        callback_id=REVIEW_ANSWER if action == ANSWER else PATH_REVIEW,
        private_metadata=meta,
        title=PlainTextObject(text=title),
        submit=PlainTextObject(text=submit),
        close=PlainTextObject(text="Cancel"),
        blocks=blocks,
    )
    return view.to_dict()


def _escape(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
