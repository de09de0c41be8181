"""The Slack Web API for one organization: its bot token (an organization secret) on slack_sdk's WebClient."""

from __future__ import annotations

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from escalations.notify.channels import RetryLater
from governance.models import Organization
from governance.secrets import SecretMissing
from governance.selectors import secret_value

BOT_TOKEN = "slack_bot_token"
SIGNING_SECRET = "slack_signing_secret"
TIMEOUT = 10  # seconds; a delivery sweep must not hang on one workspace


def client(token: str | None = None) -> WebClient:
    return WebClient(token=token, base_url=settings.SLACK_API_URL, timeout=TIMEOUT)


def bot(org: Organization) -> WebClient:
    return client(secret_value(org=org, name=BOT_TOKEN))


def signing_secret(org: Organization) -> str:
    """The organization's own signing secret if an admin entered one, else the app's (settings)."""
    try:
        return secret_value(org=org, name=SIGNING_SECRET)
    except SecretMissing:  # the app-wide one applies
        return settings.SLACK_SIGNING_SECRET


def call(api: WebClient, method: str, **params) -> dict:
    """One API call; a rate limit (429) becomes RetryLater with Slack's Retry-After, other errors raise."""
    try:
        return getattr(api, method)(**params).data
    except SlackApiError as e:
        if e.response.status_code == 429:
            seconds = float(e.response.headers.get("Retry-After", e.response.headers.get("retry-after", 30)))
            raise RetryLater(seconds, f"Slack {method} rate limited") from None
        raise
