"""The notification settings form and the webhook form."""

from __future__ import annotations

from django import forms

from escalations.models import Notification, Webhook
from escalations.notify.channels import CHANNELS
from escalations.notify.kinds import DIGESTIBLE, NOTIFICATION_KINDS, URGENT


class NotificationPreferencesForm(forms.Form):
    """Per kind, one checkbox per registered channel (checked: "tell me there"), a daily-digest box for low-severity
    kinds, and quiet hours. The service refuses an urgent kind with every channel off; the form says so first."""

    quiet_hours = forms.BooleanField(
        required=False,
        label="Quiet hours",
        help_text="Outside the organization's business hours, hold messages that can wait until the next opening. "
        "Escalations and other urgent messages still come at once; the inbox is always up to date.",
    )

    def __init__(self, *args, off: set[tuple[str, str]], digest_kinds: set[str], **kwargs):
        super().__init__(*args, **kwargs)
        for kind, label in NOTIFICATION_KINDS.items():
            for channel in CHANNELS:
                self.fields[f"{kind}__{channel}"] = forms.BooleanField(
                    required=False, initial=(kind, channel) not in off, label=f"{label}: {channel_label(channel)}"
                )
            if kind in DIGESTIBLE:
                self.fields[f"{kind}__digest"] = forms.BooleanField(
                    required=False, initial=kind in digest_kinds, label=f"{label}: by email in the daily digest"
                )

    @staticmethod
    def channels() -> list[str]:
        return [channel_label(channel) for channel in CHANNELS]

    def rows(self) -> list[tuple[str, bool, list[forms.BoundField], forms.BoundField | None]]:
        return [
            (
                label,
                kind in URGENT,
                [self[f"{kind}__{channel}"] for channel in CHANNELS],
                self[f"{kind}__digest"] if kind in DIGESTIBLE else None,
            )
            for kind, label in NOTIFICATION_KINDS.items()
        ]

    def clean(self):
        data = super().clean()
        for kind in URGENT:
            if not any(data.get(f"{kind}__{channel}") for channel in CHANNELS):
                self.add_error(
                    None, f"“{NOTIFICATION_KINDS[kind]}” is urgent: keep at least one channel for it switched on."
                )
        return data

    def off(self) -> set[tuple[str, str]]:
        return {
            (kind, channel)
            for kind in NOTIFICATION_KINDS
            for channel in CHANNELS
            if not self.cleaned_data[f"{kind}__{channel}"]
        }

    def digest_kinds(self) -> set[str]:
        return {kind for kind in DIGESTIBLE if self.cleaned_data[f"{kind}__digest"]}


def channel_label(name: str) -> str:
    return Notification.Channel(name).label


class WebhookForm(forms.ModelForm):
    url = forms.URLField(
        max_length=500, assume_scheme="https", label="URL", help_text="An https address that accepts POSTed JSON."
    )

    class Meta:
        model = Webhook
        fields = ["name", "url", "slack_format", "is_active"]
        labels = {"slack_format": "Slack format", "is_active": "Active"}
        help_texts = {
            "slack_format": 'Post {"text": "..."}, what a Slack (or Mattermost, Teams) incoming webhook expects.',
            "is_active": "Inactive webhooks hear nothing; undelivered events to them are dropped.",
        }

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not editing:
            del self.fields["is_active"]


class TeamsForm(forms.Form):
    url = forms.URLField(
        max_length=2000,
        assume_scheme="https",
        label="Webhook or Workflows URL",
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="In Teams: a channel's Workflows “Post to a channel when a webhook request is received”, or an "
        "incoming webhook. The address is a credential: it is stored encrypted and never shown again.",
    )


class DeliveryLogForm(forms.Form):
    """The delivery log's filters; the channel's choices are the organization's own (a foreign webhook id is no
    choice)."""

    channel = forms.ChoiceField(label="Channel")
    state = forms.ChoiceField(
        label="State",
        required=False,
        choices=[
            ("", "Any state"),
            ("failed", "Failed (given up)"),
            ("retrying", "Retrying"),
            ("pending", "Pending"),
            ("held", "Held for the daily digest"),
            ("delivered", "Delivered"),
        ],
    )

    def __init__(self, *args, channels: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["channel"].choices = channels
