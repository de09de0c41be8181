"""Forms of the review pages: one per kind of decision, the session's, the filters. They validate input and scope
every choice to the organization; the rules (who decides, what a decision needs) stay in
escalations.decisions.services."""

from __future__ import annotations

from datetime import date

from django import forms

from escalations.models import Decision, ReviewSession
from governance.forms import MembersChoiceField, active_members
from governance.models import Membership, Organization, Team, single_line_validator
from scorecards.forms import threshold_raw, threshold_text  # the KPI settings form's spelling of thresholds
from scorecards.models import Kpi

DATE_WIDGET = {"attrs": {"type": "date"}, "format": "%Y-%m-%d"}
REASON_HELP = "On the record: the decision log, the minutes and the audit log show it."


def reason_field(label: str = "Reason") -> forms.CharField:
    # Not required here: the decision's service refuses an empty reason, with the message every page shows.
    return forms.CharField(
        label=label, required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 2}), help_text=REASON_HELP
    )


def expected_field(help_text: str = "Optional: the decision log checks whether the KPI was on track by then."):
    return forms.DateField(
        required=False, label="Expect on track by", widget=forms.DateInput(**DATE_WIDGET), help_text=help_text
    )


class DecisionForm(forms.Form):
    """What every decision carries: the session it is taken in (an open one of this organization, or none)."""

    kind: str = ""
    label: str = ""
    session = forms.ModelChoiceField(queryset=ReviewSession.objects.none(), required=False, widget=forms.HiddenInput)

    def __init__(self, *args, org: Organization, kpi: Kpi, members: list[Membership] | None = None, **kwargs):
        kwargs.setdefault("auto_id", f"d{kpi.pk}-{self.kind}-%s")
        super().__init__(*args, **kwargs)
        self.kpi, self.org = kpi, org
        # The organization's active members, read once for a whole agenda of forms (None: read here).
        self.members = members
        self.fields["session"].queryset = ReviewSession.objects.for_org(org).filter(closed_at=None)
        self.fields["session"].error_messages["invalid_choice"] = "This review session is closed."

    def member_field(self, name: str, exclude: int | None = None) -> None:
        """A member choice scoped to the organization's active members; rendered from `members` when given, so
        twenty items' forms do not read the members twenty times (validation still reads the queryset)."""
        field = self.fields[name]
        field.queryset = active_members(self.org).exclude(pk=exclude)
        field.label_from_instance = lambda m: m.user.name
        if self.members is not None:
            field.choices = [("", field.empty_label)] + [(m.pk, m.user.name) for m in self.members if m.pk != exclude]


class PathDecisionForm(DecisionForm):
    """Approve or reject: the verdict comes from the button pressed (name="decision"), not from a field."""

    kind, label = "path", "Review the path"
    reason = reason_field("Comment and reason")
    expected_by = expected_field("Approving: leave empty to follow the path's own expected recovery.")

    def clean(self):
        data = super().clean()
        verdict = self.data.get("decision")
        if verdict not in ("approve", "reject"):
            raise forms.ValidationError("Approve or reject the path.")
        data["approve"] = verdict == "approve"
        return data


class AcceptRiskForm(DecisionForm):
    kind, label = "risk", "Accept the risk"
    until = forms.DateField(
        label="Accept until",
        widget=forms.DateInput(**DATE_WIDGET),
        help_text="Escalation pauses until this day; unless the KPI is on track by then, it starts again at level 1.",
    )
    reason = reason_field()


class ChangeTargetForm(DecisionForm):
    kind, label = "target", "Change the target"
    target_value = forms.FloatField(required=False, label="Target")
    target_by = forms.DateField(required=False, label="Target date", widget=forms.DateInput(**DATE_WIDGET))
    warning = forms.CharField(max_length=100, help_text='A number, a percentage of the target ("95%"), or "lo, hi"')
    critical = forms.CharField(max_length=100)
    reason = reason_field("Justification")
    expected_by = expected_field()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        kpi = self.kpi
        if not self.is_bound:
            self.initial.update(
                target_value=kpi.target_value,
                target_by=kpi.target_by,
                warning=threshold_text(kpi.thresholds.get("warning", "")),
                critical=threshold_text(kpi.thresholds.get("critical", "")),
            )
        if kpi.unit:
            self.fields["target_value"].label = f"Target ({kpi.unit})"

    def thresholds(self) -> dict:
        data = self.cleaned_data
        return {
            "warning": threshold_raw(data["warning"], self.kpi.direction),
            "critical": threshold_raw(data["critical"], self.kpi.direction),
        }


class TransferForm(DecisionForm):
    kind, label = "transfer", "Transfer the ownership"
    to_owner = forms.ModelChoiceField(queryset=None, label="New owner", empty_label="Choose the new owner")
    reason = reason_field()
    expected_by = expected_field()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.member_field("to_owner", exclude=self.kpi.owner_id)


class AssignActionForm(DecisionForm):
    kind, label = "action", "Assign an action"
    description = forms.CharField(max_length=1000, label="What must be done")
    owner = forms.ModelChoiceField(queryset=None, empty_label="Choose an owner")
    due = forms.DateField(widget=forms.DateInput(**DATE_WIDGET))
    reason = reason_field()
    expected_by = expected_field()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.member_field("owner")  # anyone active in the organization, whatever their team


DECISION_FORMS: dict[str, type[DecisionForm]] = {
    f.kind: f for f in (PathDecisionForm, AcceptRiskForm, ChangeTargetForm, TransferForm, AssignActionForm)
}


class AgendaFilterForm(forms.Form):
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False, empty_label="Every team")

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Team.objects.for_org(org)

    def team_id(self) -> int | None:
        team = self.cleaned_data.get("team") if self.is_valid() else None
        return team.pk if team else None


class SessionStartForm(forms.Form):
    title = forms.CharField(
        max_length=200,
        required=False,
        validators=[single_line_validator],
        help_text="Leave empty for “Steering review” and today.",
    )
    attendees = MembersChoiceField(queryset=None, required=False, widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["attendees"].queryset = active_members(org)
        self.fields["attendees"].help_text = "Who is in the room; you attend the review you start."


class AttendeesForm(forms.Form):
    attendees = MembersChoiceField(queryset=None, widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["attendees"].queryset = active_members(org)


class SessionCloseForm(forms.Form):
    summary = forms.CharField(
        required=False,
        max_length=4000,
        label="Closing note",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional: opens the minutes and the steering pack.",
    )


class SessionScheduleForm(forms.Form):
    """When the review meets: the attendees get a calendar invitation, or its update when the time moves."""

    scheduled_for = forms.DateTimeField(
        label="Meets on", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    )
    minutes = forms.IntegerField(label="Minutes", min_value=15, max_value=480, initial=60)


class DecisionFilterForm(forms.Form):
    kind = forms.ChoiceField(choices=[("", "Every kind"), *Decision.Kind.choices], required=False)
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False, empty_label="Every team")

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Team.objects.for_org(org)

    def filters(self) -> dict:
        data = self.cleaned_data if self.is_valid() else {}
        team = data.get("team")
        return {"kind": data.get("kind") or "", "team_id": team.pk if team else None}


class ManualValueForm(forms.Form):
    """A manual KPI's value for one ended period (scorecards.manual.manual_value_enter checks the rest: who may,
    which period, the lock and its reason)."""

    period = forms.TypedChoiceField(label="Period", coerce=date.fromisoformat)
    value = forms.FloatField(label="Value")
    note = forms.CharField(label="Note", required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 2}))
    evidence_url = forms.URLField(
        label="Evidence link",
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text="Optional: where the evidence is kept (a report, a spreadsheet, a ticket).",
    )
    reason = forms.CharField(
        label="Reason for the correction",
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required when the period is already confirmed: a correction needs its reason on the record.",
    )

    def __init__(self, *args, periods: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["period"].choices = periods


class ManualDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("confirm", "Confirm"), ("reject", "Reject")])
    reason = forms.CharField(required=False, max_length=4000)
