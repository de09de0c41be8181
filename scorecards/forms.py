"""Forms validate like the manifest does and scope every choice to the organization."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.apps import apps

from governance.durations import format_duration, parse_duration
from governance.forms import MemberChoiceField, TenantModelForm, active_members
from governance.models import Organization, Team
from scorecards.evaluation.thresholds import RANGE, ThresholdError, parse_number, settings_errors
from scorecards.models import DataSource, KeyResult, Kpi, Objective
from scorecards.services import KPI_SETTINGS


class DurationField(forms.CharField):
    """A duration typed as people write it: 15m, 2h, 3d, 1w."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("help_text", "e.g. 15m, 2h, 3d, 1w")
        super().__init__(*args, **kwargs)

    def prepare_value(self, value):
        return format_duration(value) if isinstance(value, timedelta) else value

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return None
        try:
            return parse_duration(value)
        except ValueError as e:
            raise forms.ValidationError(str(e)) from None


def threshold_text(value) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(threshold_text(v) for v in value)
    return f"{value:g}" if isinstance(value, float | int) else str(value)


def threshold_raw(text: str, direction: str):
    parts = [p.strip() for p in text.split(",")]
    values = []
    for part in parts:
        try:
            number, relative = parse_number(float(part) if not part.endswith("%") else part, "threshold")
        except (ThresholdError, ValueError):
            return text  # parse_thresholds words the error
        values.append(f"{number:g}%" if relative else number)
    if direction == RANGE:
        return values
    return values[0] if len(values) == 1 else values


class KpiForm(TenantModelForm):
    warning = forms.CharField(help_text='A number, a percentage of the target ("95%"), or "low, high" for a range')
    critical = forms.CharField(help_text="Same form as warning; beyond it the KPI is off track")
    aggregate_window = DurationField(required=False, help_text="Window of the aggregate, e.g. 7d; empty for last value")
    cadence = DurationField(initial="1d")
    stale_after = DurationField(initial="3d")
    evaluate_every = DurationField(initial="1h")
    pending_for = DurationField(initial="0m")
    keep_for = DurationField(initial="0m")
    surge_window = DurationField(required=False)
    owner = MemberChoiceField(queryset=None, help_text="Locked once created; change it by an ownership transfer")
    escalation = forms.ChoiceField(required=False, label="Escalation policy")

    GROUPS = [
        ("What is measured", ["name", "key", "owner", "team", "description", "unit", "direction"]),
        (
            "Target and thresholds",
            [
                "target_value",
                "target_by",
                "baseline_value",
                "baseline_at",
                "warning",
                "critical",
                "aggregate_fn",
                "aggregate_window",
            ],
        ),
        ("Evaluation", ["cadence", "stale_after", "evaluate_every", "pending_for", "keep_for", "recovery_margin"]),
        ("Signals and routing", ["surge_change", "surge_window", "forecast", "escalation", "data_source"]),
    ]

    class Meta:
        model = Kpi
        # The service's settings, thresholds edited as two text fields; key and owner only on creation.
        fields = [
            "key",
            "owner",
            *(
                name
                for setting in KPI_SETTINGS
                for name in (("warning", "critical") if setting == "thresholds" else (setting,))
            ),
        ]
        labels = {
            "aggregate_fn": "Aggregate",
            "target_value": "Target",
            "target_by": "Target date",
            "baseline_at": "Baseline date",
            "forecast": "Count a projected miss of a dated target as at risk",
        }
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "target_by": forms.DateInput(attrs={"type": "date"}),
            "baseline_at": forms.DateInput(attrs={"type": "date"}),
        }

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, org=org, **kwargs)
        self.fields["team"].queryset = Team.objects.for_org(org)
        self.fields["data_source"].queryset = DataSource.objects.for_org(org).filter(archived_at=None)
        # Policies live in the escalations app, above this one: looked up through the app registry, not imported.
        policies = apps.get_model("escalations", "EscalationPolicy").objects.for_org(org).filter(archived_at=None)
        self.fields["escalation"].choices = [("", "(the team's or the organization's default)")] + [
            (p.key, p.name) for p in policies
        ]
        if self.instance.pk:
            del self.fields["owner"]  # locked: see ownership transfers
            self.fields["key"].disabled = True
            self.initial["warning"] = threshold_text(self.instance.thresholds.get("warning", ""))
            self.initial["critical"] = threshold_text(self.instance.thresholds.get("critical", ""))
        else:
            self.fields["owner"].queryset = active_members(org)

    def clean(self):
        data = super().clean()
        direction = data.get("direction")
        raw = None
        if direction and data.get("warning") and data.get("critical"):
            raw = {
                "warning": threshold_raw(data["warning"], direction),
                "critical": threshold_raw(data["critical"], direction),
            }
        errors = settings_errors(
            direction,
            raw,
            target_value=data.get("target_value"),
            target_by=data.get("target_by"),
            baseline_value=data.get("baseline_value"),
            baseline_at=data.get("baseline_at"),
        )
        for name, message in errors.items():
            self.add_error(name, message)
        if raw is not None and "warning" not in errors and "critical" not in errors:
            self.instance.thresholds = raw
        for name in ("recovery_margin", "surge_change"):
            if data.get(name):
                try:
                    parse_number(data[name] if data[name].endswith("%") else float(data[name]), name)
                except (ThresholdError, ValueError):
                    self.add_error(name, 'Use a number in the KPI\'s unit or a percentage like "2%".')
        if bool(data.get("surge_change")) != bool(data.get("surge_window")):
            self.add_error("surge_window", "Surge detection needs both a change and a window.")
        return data

    def groups(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [(title, [self[name] for name in names if name in self.fields]) for title, names in self.GROUPS]

    def settings(self) -> dict:
        """The cleaned values for kpi_create / kpi_update, thresholds in the manifest's shape."""
        fields = {k: v for k, v in self.cleaned_data.items() if k not in ("warning", "critical", "key", "owner")}
        return {**fields, "thresholds": self.instance.thresholds}


class TransferRequestForm(forms.Form):
    to_owner = MemberChoiceField(queryset=None, label="New owner")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, kpi: Kpi, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["to_owner"].queryset = active_members(kpi.organization).exclude(pk=kpi.owner_id)


class TransferDecisionForm(forms.Form):
    # "take": a leaver's KPI accepted from an inbox task, by its addressee or by someone it was escalated to.
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject"), ("take", "Accept ownership")])
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ObjectiveForm(TenantModelForm):
    owner = MemberChoiceField(queryset=None)
    parent = forms.ModelChoiceField(queryset=None, required=False, empty_label="(top level)")

    class Meta:
        model = Objective
        fields = ["key", "title", "owner", "team", "period_start", "period_end", "parent"]
        widgets = {
            "period_start": forms.DateInput(attrs={"type": "date"}),
            "period_end": forms.DateInput(attrs={"type": "date"}),
        }

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, org=org, **kwargs)
        self.fields["owner"].queryset = active_members(org)
        self.fields["team"].queryset = Team.objects.for_org(org)
        parents = Objective.objects.for_org(org).filter(archived_at=None)
        self.fields["parent"].queryset = parents.exclude(pk=self.instance.pk) if self.instance.pk else parents


class KeyResultForm(TenantModelForm):
    owner = MemberChoiceField(queryset=None, required=False, help_text="Checks values in when no KPI is linked")

    class Meta:
        model = KeyResult
        fields = ["key", "title", "kpi", "owner", "start", "target"]

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, org=org, **kwargs)
        self.fields["kpi"].queryset = Kpi.objects.for_org(org).filter(archived_at=None)
        self.fields["owner"].queryset = active_members(org)

    def clean(self):
        data = super().clean()
        if not data.get("kpi") and not data.get("owner"):
            self.add_error("owner", "Link a KPI or name an owner who checks values in.")
        if data.get("start") is not None and data.get("start") == data.get("target"):
            self.add_error("target", "The target must differ from the start.")
        return data


class CheckInForm(forms.Form):
    value = forms.FloatField()
    note = forms.CharField(required=False, max_length=500)
