"""Forms of the workstream pages: they validate input and scope every choice to the organization; the rules
(who may file, what a path needs) stay in escalations.workstreams.services."""

from __future__ import annotations

from django import forms
from django.forms import BaseFormSet, formset_factory
from django.http import QueryDict

from escalations.models import Workstream
from escalations.workstreams.services import ActionDraft
from governance.forms import MemberChoiceField, active_members
from governance.models import Membership, Organization

MAX_ACTIONS = 10


BLANK_ROWS = 2  # without JavaScript a second action needs no round trip


ACTION_FIELDS = ("description", "owner", "due")


DATE_WIDGET = {"attrs": {"type": "date"}, "format": "%Y-%m-%d"}


class PathForm(forms.Form):
    root_cause = forms.CharField(
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What caused the breach, in a few sentences.",
    )
    expected_recovery = forms.DateField(
        widget=forms.DateInput(**DATE_WIDGET), help_text="The day you expect the KPI back on track."
    )


class ActionForm(forms.Form):
    description = forms.CharField(max_length=1000, label="What will be done")
    owner = MemberChoiceField(queryset=Membership.objects.none(), empty_label="Choose an owner")
    due = forms.DateField(widget=forms.DateInput(**DATE_WIDGET), label="Due")

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        # Anyone active in the organization, whatever their team; nobody from elsewhere.
        self.fields["owner"].queryset = active_members(org)
        self.fields["owner"].label_from_instance = lambda m: m.user.name


class BaseActionFormSet(BaseFormSet):
    """Action rows, each optional (a blank row is ignored): the service, not the form, refuses a path without
    actions, so the page shows the same message as the API."""

    def initial_form_count(self) -> int:
        return 0  # every row is an "extra" row, so a prefilled one left blank is still allowed

    def drafts(self) -> list[ActionDraft]:
        return [
            ActionDraft(form.cleaned_data["description"], form.cleaned_data["owner"], form.cleaned_data["due"])
            for form in self.forms
            if form.has_changed() and form.cleaned_data
        ]


ActionFormSet = formset_factory(
    ActionForm,
    formset=BaseActionFormSet,
    extra=0,
    max_num=MAX_ACTIONS,
    validate_max=True,
    absolute_max=MAX_ACTIONS,
)


def action_formset(*, org: Organization, data: QueryDict | None = None, rows: list[dict] | None = None):
    """Bound to a POST, or unbound showing `rows` (each a dict of the row's values) and no more."""
    if data is not None:
        return ActionFormSet(data, prefix="actions", form_kwargs={"org": org})
    rows = rows if rows is not None else [{}] * BLANK_ROWS
    formset = ActionFormSet(initial=rows, prefix="actions", form_kwargs={"org": org})
    formset.extra = len(rows)
    return formset


def posted_rows(data: QueryDict) -> list[dict]:
    """The action rows as typed, unvalidated, to show them again after a row is added or removed."""
    try:
        total = min(int(data.get("actions-TOTAL_FORMS", 0)), MAX_ACTIONS)
    except ValueError:
        total = 0
    return [{name: data.get(f"actions-{i}-{name}", "") for name in ACTION_FIELDS} for i in range(total)]


class ReviewForm(forms.Form):
    # The reason is required by the review service (one message on every page and the API), not by the form.
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    reason = forms.CharField(
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="On the record: the decision log shows it. Rejecting: say what the owner should change.",
    )


class ActionUpdateForm(forms.Form):
    progress = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    done = forms.BooleanField(required=False)

    def clean(self):
        data = super().clean()
        if not data.get("done") and not (data.get("progress") or "").strip():
            raise forms.ValidationError("Write what has happened, or mark the action done.")
        return data


class CloseForm(forms.Form):
    resolution = forms.ChoiceField(
        # Nothing preselected: how an episode ends is a decision, never a default.
        choices=[
            ("", "Choose how it ends"),
            *(c for c in Workstream.Resolution.choices if c[0] != Workstream.Resolution.RECOVERED),
        ],
        label="How the episode ends",
        help_text="Recovery is recorded by the evaluator when the KPI is on track again; this is a decision.",
    )
    reason = forms.CharField(
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="On the record for everyone told.",
    )


class WorkstreamFilterForm(forms.Form):
    STATES = [("open", "Open"), ("resolved", "Resolved"), ("all", "All")]

    state = forms.ChoiceField(choices=STATES, required=False)
    kind = forms.ChoiceField(choices=[("", "Any kind"), *Workstream.Kind.choices], required=False)

    def filters(self) -> dict[str, str]:
        data = self.cleaned_data if self.is_valid() else {}
        return {"state": data.get("state") or "open", "kind": data.get("kind") or ""}


class ReviewAnswerForm(forms.Form):
    """One KPI's answer in a review task (`review`: which of the task's reviews; optional when one is open)."""

    review = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    impact = forms.TypedChoiceField(
        choices=[("yes", "Impact: open a preventive workstream"), ("no", "No impact")],
        coerce=lambda value: value == "yes",
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)
