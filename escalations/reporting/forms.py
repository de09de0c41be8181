"""The scheduled-report form: choices scoped to the organization, addresses checked one by one."""

from __future__ import annotations

from django import forms
from django.core.validators import validate_email

from escalations.models import ReportSubscription
from escalations.models.reports import WEEKDAYS
from governance.forms import TenantModelForm, active_members
from scorecards.models import Scorecard

MAX_EMAILS = 50


class SubscriptionForm(TenantModelForm):
    weekday = forms.TypedChoiceField(choices=WEEKDAYS, coerce=int, initial=0, help_text="For weekly reports.")
    send_time = forms.TimeField(
        initial="08:00",
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text="In the organization's timezone; weekly and monthly reports.",
    )
    emails = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Other addresses",
        help_text="Board members without an account: one address per line. They get the report as you see it.",
    )

    class Meta:
        model = ReportSubscription
        fields = [
            "name",
            "content",
            "scorecard",
            "format",
            "cadence",
            "weekday",
            "send_time",
            "hours_before",
            "members",
        ]
        widgets = {"members": forms.CheckboxSelectMultiple}
        labels = {"members": "Members", "hours_before": "Hours before the session", "content": "Report"}
        help_texts = {
            "scorecard": "For a scorecard report; empty means all KPIs.",
            "hours_before": "For reports before each review session that has a meeting time.",
        }

    def __init__(self, *args, org, **kwargs):
        super().__init__(*args, org=org, **kwargs)
        self.fields["scorecard"].queryset = Scorecard.objects.for_org(org).order_by("name")
        self.fields["members"].queryset = active_members(org)
        self.fields["members"].label_from_instance = lambda m: f"{m.user.name} ({m.get_role_display().lower()})"
        self.fields["members"].required = False
        if self.instance.pk and not self.is_bound:
            self.initial["emails"] = "\n".join(self.instance.emails)

    def clean_emails(self) -> list[str]:
        addresses = sorted({line.strip().lower() for line in self.cleaned_data["emails"].split() if line.strip()})
        for address in addresses:
            try:
                validate_email(address)
            except forms.ValidationError:
                raise forms.ValidationError(f"{address} is not an email address.") from None
        if len(addresses) > MAX_EMAILS:
            raise forms.ValidationError(f"At most {MAX_EMAILS} addresses.")
        return addresses

    def save(self, commit: bool = False) -> ReportSubscription:
        # The service saves the row and its members (escalations.reporting.subscriptions.subscription_save).
        sub = super().save(commit=False)
        sub.emails = self.cleaned_data["emails"]
        return sub
