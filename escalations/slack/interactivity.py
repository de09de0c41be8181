"""Slack's requests: button clicks and modal submissions (interactivity) and `/steerco` (slash command).

Each request is signed with the app's signing secret over `v0:<timestamp>:<body>`; one older than 5 minutes or
badly signed is refused before anything is read. The workspace (team id) names the organization; the Slack user
names the member through their link. A click is answered at once and the decision is taken by a Celery task
(escalations.slack.tasks.act): Slack gives up after 3 seconds and resends, and a request seen before (same body,
X-Slack-Retry-Num) acts once, by its receipt."""

from __future__ import annotations

import hashlib
import json
import time

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from escalations.engine import authority as deciding
from escalations.models import SlackActionReceipt, SlackInstallation, SlackLink, SlackMessage
from escalations.slack import blocks, services, tasks
from escalations.slack.client import bot, call, signing_secret
from escalations.slack.delivery import with_context
from escalations.workstreams.services import may_answer
from governance import tenancy
from governance.access import REASON_REQUIRED
from governance.models import Membership

MAX_AGE = 5 * 60  # seconds, Slack's own advice against replayed requests
NOT_LINKED = "Your Slack account is not linked to a Steerco member: open My Slack account in Steerco for a link code."


def _verified(request: HttpRequest, team_id: str) -> tuple[SlackInstallation | None, HttpResponse | None]:
    """The workspace's installation if the request is Slack's, fresh and signed; else the refusal."""
    stamp = request.headers.get("X-Slack-Request-Timestamp", "")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > MAX_AGE:
        return None, HttpResponse("Refused: the request's timestamp is missing or older than 5 minutes.", status=401)
    with tenancy.scope(token=team_id or "-"):
        installation = SlackInstallation.objects.select_related("organization").filter(team_id=team_id).first()
    if installation is None:
        return None, HttpResponse("Refused: this Slack workspace is not connected to Steerco.", status=403)
    tenancy.switch(organization=installation.organization_id)
    verifier = SignatureVerifier(signing_secret(installation.organization))
    if not verifier.is_valid(request.body, stamp, request.headers.get("X-Slack-Signature", "")):
        return None, HttpResponse(
            "Refused: the request's signature does not match the app's signing secret.", status=401
        )
    return installation, None


def _member(installation: SlackInstallation, user_id: str) -> Membership | None:
    link = (
        SlackLink.objects.filter(
            organization_id=installation.organization_id, team_id=installation.team_id, user_id=user_id
        )
        .select_related("membership__user", "membership__organization")
        .first()
    )
    return link.membership if link and link.membership.is_active else None


def _first_time(installation: SlackInstallation, request: HttpRequest) -> bool:
    """Whether this request is new (not a retry of one acted on): its receipt is written once."""
    key = hashlib.sha256(b"%s:%s" % (installation.team_id.encode(), request.body)).hexdigest()
    try:
        with transaction.atomic():
            SlackActionReceipt.objects.create(organization_id=installation.organization_id, key=key)
    except IntegrityError:
        return False
    return True


def _ephemeral(text: str) -> JsonResponse:
    return JsonResponse({"response_type": "ephemeral", "text": text})


@csrf_exempt
@require_POST
def interactivity(request: HttpRequest) -> HttpResponse:
    try:
        payload = json.loads(request.POST["payload"])
        team_id = (payload.get("team") or {}).get("id") or payload["user"]["team_id"]
        user_id = str(payload["user"]["id"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return HttpResponse("Refused: not a Slack interactivity payload.", status=400)
    installation, refusal = _verified(request, team_id)
    if refusal:
        return refusal
    member = _member(installation, user_id)
    if payload.get("type") == "block_actions":
        return _clicked(request, installation, member, payload)
    if payload.get("type") == "view_submission":
        return _submitted(request, installation, member, payload)
    return HttpResponse(status=200)


def _message(installation: SlackInstallation, member: Membership, message_id) -> SlackMessage | None:
    """The member's own message in this organization, or None (another's, another organization's, or no id)."""
    if not str(message_id).isdigit():
        return None
    messages = SlackMessage.objects.filter(organization_id=installation.organization_id, recipient=member)
    return with_context(messages).filter(pk=int(message_id)).first()


def _clicked(request: HttpRequest, installation, member: Membership | None, payload: dict) -> HttpResponse:
    action = (payload.get("actions") or [{}])[0]
    if action.get("action_id") not in (blocks.ACKNOWLEDGE, blocks.APPROVE, blocks.REJECT, blocks.ANSWER):
        return HttpResponse(status=200)  # "Open in Steerco" is a link: nothing to do
    message = _message(installation, member, action.get("value")) if member else None
    if message is None:
        return _ephemeral(NOT_LINKED if member is None else "This message is not yours to act on.")
    org_id = installation.organization_id
    if action["action_id"] == blocks.ACKNOWLEDGE:
        if _first_time(installation, request):
            tasks.act.delay(org_id, member.pk, message.pk, blocks.ACKNOWLEDGE)
        return HttpResponse(status=200)
    refusal = _refusal(message, member, action["action_id"])
    if refusal:
        if _first_time(installation, request):
            tasks.tell_refusal.delay(org_id, member.pk, message.pk, refusal)
        return HttpResponse(status=200)
    # The trigger id lives 3 seconds: the modal is opened now, the decision waits for its submission.
    try:
        call(
            bot(installation.organization),
            "views_open",
            trigger_id=payload["trigger_id"],
            view=blocks.reason_modal(message, action["action_id"]),
        )
    except SlackApiError:
        return _ephemeral("Slack did not open the form; try the button again, or decide in Steerco.")
    return HttpResponse(status=200)


def _refusal(message: SlackMessage, member: Membership, action: str) -> str:
    """Why the member may not take this decision, in words ("" when they may): the web's authority."""
    if action == blocks.ANSWER:
        ok = message.review is not None and message.task is not None and may_answer(message.task, member)
        return "" if ok else "Only the task's assignee answers this dependency review."
    if message.path is None:
        return "There is no mitigation path to review in this message."
    allowed = deciding.authority("path_review", by=member, path=message.path)
    if not allowed:
        return allowed.refusal
    if allowed.self_approved:
        return "Nobody else may review this path: approve it in Steerco, where the self-approval is recorded."
    return ""


def _submitted(request: HttpRequest, installation, member: Membership | None, payload: dict) -> HttpResponse:
    view = payload["view"]
    try:
        meta = json.loads(view["private_metadata"])
        values = view["state"]["values"]
    except (KeyError, ValueError):
        return HttpResponse("Refused: not a Steerco form.", status=400)
    message = _message(installation, member, meta.get("message")) if member else None
    if message is None:
        return JsonResponse({"response_action": "errors", "errors": {blocks.REASON_BLOCK: NOT_LINKED}})
    reason = ((values.get(blocks.REASON_BLOCK) or {}).get(blocks.REASON_INPUT) or {}).get("value") or ""
    action, impact = meta.get("action"), False
    if action == blocks.ANSWER:
        chosen = ((values.get(blocks.IMPACT_BLOCK) or {}).get(blocks.IMPACT_INPUT) or {}).get("selected_option") or {}
        if chosen.get("value") not in ("impact", "no_impact"):
            return JsonResponse(
                {"response_action": "errors", "errors": {blocks.IMPACT_BLOCK: "Say whether your KPI is affected."}}
            )
        impact = chosen["value"] == "impact"
    elif action not in (blocks.APPROVE, blocks.REJECT):
        return HttpResponse("Refused: unknown decision.", status=400)
    if not impact and not reason.strip():
        return JsonResponse({"response_action": "errors", "errors": {blocks.REASON_BLOCK: REASON_REQUIRED}})
    if _first_time(installation, request):
        tasks.act.delay(installation.organization_id, member.pk, message.pk, action, reason, impact)
    return HttpResponse(status=200)


@csrf_exempt
@require_POST
def command(request: HttpRequest) -> HttpResponse:
    """`/steerco link CODE` links the Slack user to the member whose code it is; anything else says what works."""
    installation, refusal = _verified(request, request.POST.get("team_id", ""))
    if refusal:
        return refusal
    words = request.POST.get("text", "").split()
    if len(words) == 2 and words[0] == "link":
        try:
            member = services.link_by_code(
                installation=installation, user_id=request.POST.get("user_id", ""), code=words[1]
            )
        except ValidationError as e:
            return _ephemeral(" ".join(e.messages))
        return _ephemeral(f"Linked: you are {member.user.name} in {member.organization.name} on Steerco.")
    return _ephemeral("Usage: `/steerco link CODE`, with the code from My Slack account in Steerco.")
