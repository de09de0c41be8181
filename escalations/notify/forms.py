"""The notification settings form and the webhook form."""

from __future__ import annotations

from django import forms

from escalations.models import Notification, Webhook
from escalations.notify.services import NOTIFICATION_KINDS


class NotificationPreferencesForm(forms.Form):
    """One checkbox per kind and channel; a checked box means "tell me"."""

    def __init__(self, *args, off: set[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        for kind, label in NOTIFICATION_KINDS.items():
            for channel, channel_label in Notification.Channel.choices:
                self.fields[f"{kind}__{channel}"] = forms.BooleanField(
                    required=False, initial=(kind, channel) not in off, label=f"{label}: {channel_label.lower()}"
                )

    def rows(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [
            (label, [self[f"{kind}__{channel}"] for channel in Notification.Channel.values])
            for kind, label in NOTIFICATION_KINDS.items()
        ]

    def off(self) -> set[tuple[str, str]]:
        return {
            (kind, channel)
            for kind in NOTIFICATION_KINDS
            for channel in Notification.Channel.values
            if not self.cleaned_data[f"{kind}__{channel}"]
        }


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
