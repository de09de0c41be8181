"""x"""

from __future__ import annotations

from django import forms

from escalations.models import Webhook


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
