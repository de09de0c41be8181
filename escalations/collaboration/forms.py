from __future__ import annotations

from datetime import timedelta

from django import forms

from scorecards.models import Scorecard


class CommentForm(forms.Form):
    body = forms.CharField(
        label="Comment",
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Markdown; type @ and a name to mention a colleague"}),
    )


class AttachmentForm(forms.Form):
    file = forms.FileField(label="Attach a file")


class ShareLinkForm(forms.Form):
    VALIDITY = [(1, "1 day"), (7, "1 week"), (30, "30 days"), (90, "90 days")]

    scorecard = forms.ModelChoiceField(queryset=Scorecard.objects.none())
    label = forms.CharField(max_length=200, required=False, help_text="Who it is for, e.g. “Board, March meeting”.")
    valid_days = forms.TypedChoiceField(label="Valid for", choices=VALIDITY, coerce=int, initial=30)
    passcode = forms.CharField(
        required=False,
        max_length=128,
        widget=forms.PasswordInput(render_value=False),
        help_text="Optional. Tell it to the recipients another way than the link.",
    )

    def __init__(self, *args, org, **kwargs):
        super().__init__(*args, **kwargs)
        # Scoped choices: another organization's scorecard id is no choice at all.
        self.fields["scorecard"].queryset = Scorecard.objects.for_org(org).filter(archived_at=None)

    @property
    def valid_for(self) -> timedelta:
        return timedelta(days=self.cleaned_data["valid_days"])


class PasscodeForm(forms.Form):
    passcode = forms.CharField(max_length=128, widget=forms.PasswordInput(attrs={"autofocus": True}))
