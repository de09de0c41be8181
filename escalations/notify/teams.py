"""Microsoft Teams: workstream events as Adaptive Cards, posted to an organization's Teams incoming webhook or Power
Automate Workflows URL. One Webhook row per organization (Webhook.teams) carries it through the webhook sweep
(retries, Retry-After, the delivery log); its URL is a credential, kept in the organization secret SECRET_NAME.

Teams shows the card and its "Open in Steerco" button; decisions are taken in Steerco (or from Slack), since an
incoming webhook cannot send a click back."""

from __future__ import annotations

from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils.dateparse import parse_datetime

from escalations.models import Webhook
from governance import formats
from governance.models import Organization, Secret, User
from governance.services.audit import audit_log
from governance.services.secrets import secret_delete, secret_set
from scorecards.models import Status

SECRET_NAME = "teams_webhook_url"
CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.4"  # what Teams renders in incoming-webhook and Workflows posts
STATUS_COLORS = {Status.ON_TRACK: "Good", Status.AT_RISK: "Warning", Status.OFF_TRACK: "Attention"}


def message(payload: dict) -> dict:
    """The body Teams expects: a `message` whose one attachment is the card."""
    return {
        "type": "message",
        "attachments": [{"contentType": CONTENT_TYPE, "contentUrl": None, "content": card(payload)}],
    }


def card(payload: dict) -> dict:
    """The card of one webhook payload (escalations.notify.webhooks): the KPI, its status, value against target,
    owner, what is asked and by when, and a button to the workstream."""
    org = payload.get("organization", {})
    kpi = payload.get("kpi")
    body: list[dict] = [
        {"type": "TextBlock", "text": org.get("name", "Steerco"), "size": "Small", "isSubtle": True, "wrap": True},
        {
            "type": "TextBlock",
            "text": kpi["name"] if kpi else "Steerco",
            "size": "Large",
            "weight": "Bolder",
            "wrap": True,
        },
        {"type": "TextBlock", "text": payload["text"], "wrap": True},
    ]
    if kpi:
        status = kpi.get("status") or Status.NO_DATA
        body.append(
            {
                "type": "TextBlock",
                "text": Status(status).label,
                "weight": "Bolder",
                "color": STATUS_COLORS.get(status, "Default"),
                "wrap": True,
            }
        )
        body.append({"type": "FactSet", "facts": _facts(payload, ZoneInfo(org.get("timezone") or "UTC"))})
    url = payload["workstream"]["url"] if "workstream" in payload else settings.SITE_URL + f"/o/{org.get('slug', '')}/"
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
        "actions": [{"type": "Action.OpenUrl", "title": "Open in Steerco", "url": url}],
    }


def _facts(payload: dict, tz: ZoneInfo) -> list[dict]:
    kpi = payload["kpi"]
    value = formats.value(kpi.get("value"), kpi.get("unit", ""))
    if kpi.get("target") is not None:
        value += f" (target {formats.value(kpi['target'], kpi.get('unit', ''))})"
    facts = [{"title": "Value", "value": value}, {"title": "Owner", "value": kpi.get("owner_name") or kpi["owner"]}]
    if ask := payload.get("ask"):
        facts.append({"title": "Asked", "value": ask["what"]})
        if due := parse_datetime(ask["due_at"] or ""):
            facts.append({"title": "By", "value": f"{formats.when(due, tz)} ({tz.key})"})
    return facts


# --- the admin's side: connect, disconnect ----------------------------------------------------------------------


def teams_webhook(org: Organization) -> Webhook | None:
    return Webhook.objects.for_org(org).filter(teams=True).first()


@transaction.atomic
def teams_connect(*, org: Organization, actor: User, url: str) -> Webhook:
    """Stores the URL as the organization secret and (re)activates the organization's Teams webhook; audited with
    the URL's host only."""
    url = url.strip()
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise ValidationError({"url": "Paste the whole https address Teams or Power Automate gave you."}) from None
    secret_set(org=org, actor=actor, name=SECRET_NAME, value=url)
    parts = urlsplit(url)
    hook = Webhook.objects.for_org(org).select_for_update().filter(teams=True).first() or Webhook(
        organization=org, name="Microsoft Teams", teams=True, created_by=actor
    )
    created = hook.pk is None
    hook.url, hook.is_active = f"{parts.scheme}://{parts.netloc}/", True  # the host only: the path is the credential
    hook.full_clean()
    hook.save()
    audit_log(
        org=org,
        actor=actor,
        verb="teams.connected" if created else "teams.updated",
        obj=hook,
        after={"host": parts.netloc},
    )
    return hook


@transaction.atomic
def teams_disconnect(*, org: Organization, actor: User) -> None:
    """Stops the cards and deletes the URL; the webhook row stays, deactivated, for its delivery log."""
    hook = Webhook.objects.for_org(org).select_for_update().filter(teams=True, is_active=True).first()
    if hook is None:
        raise ValidationError("Teams is not connected.")
    hook.is_active = False
    hook.save(update_fields=["is_active"])
    if secret := Secret.objects.for_org(org).filter(name=SECRET_NAME).first():
        secret_delete(secret=secret, actor=actor)
    audit_log(org=org, actor=actor, verb="teams.disconnected", obj=hook)


def teams_secret_references(org: Organization) -> dict[str, list[str]]:
    """The secret is in use while Teams is connected (registered with governance.secrets)."""
    connected = Webhook.objects.for_org(org).filter(teams=True, is_active=True).exists()
    return {SECRET_NAME: ["the Microsoft Teams webhook"]} if connected else {}
