"""Forms of the escalation policy and webhook pages; every choice is scoped to the request's organization.

The policy editor is one form plus one small form per level (prefix `level-<n>`, `level_count` of them). Levels
are added, removed and moved by the editor's `op` buttons, which re-render the levels from the posted values
without validating them, so a half-filled new level shows no errors until the policy is saved."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django import forms
from django.http import QueryDict

from escalations.models import EscalationPolicy
from governance.durations import format_duration, parse_duration
from governance.models import Membership, Organization, Role, Team, key_validator, single_line_validator
from scorecards.models import Kpi

MAX_LEVELS = 12


class DurationInput(forms.Field):
    """A duration as people write it ("2d", "4h", "30m"), shown back the same way."""

    widget = forms.TextInput(attrs={"class": "input-small", "autocomplete": "off", "spellcheck": "false"})
    default_error_messages = {"positive": "Give a duration longer than zero, e.g. 4h or 2d."}

    def prepare_value(self, value):
        return format_duration(value) if isinstance(value, timedelta) else value

    def to_python(self, value) -> timedelta | None:
        if value in self.empty_values:
            return None
        try:
            return parse_duration(value)
        except ValueError as e:
            raise forms.ValidationError(str(e)) from None

    def validate(self, value) -> None:
        super().validate(value)
        if value is not None and value <= timedelta(0):
            raise forms.ValidationError(self.error_messages["positive"], code="positive")


def target_choices(org: Organization, keep: Iterable[str] = ()) -> list[tuple[str, list[tuple[str, str]]]]:
    """Everything a level may name, grouped; `keep` adds a policy's stored targets that are no longer offered
    (a deactivated member, an invited address), so that editing shows them and the service explains why not."""
    groups = [
        ("Relative to the KPI", [("owner", "The KPI's owner"), ("team_lead", "The lead of the KPI's team")]),
        ("Roles", [(f"role:{value}", f"Every {label.lower()}") for value, label in Role.choices]),
        ("Teams", [(f"team:{t.key}", f"Team {t.name}") for t in Team.objects.for_org(org).order_by("name")]),
        (
            "People",
            [
                (f"user:{m.user.email.lower()}", m.user.name or m.user.email)
                for m in Membership.objects.for_org(org)
                .filter(is_active=True)
                .select_related("user")
                .order_by("user__name")
            ],
        ),
    ]
    offered = {value for _, choices in groups for value, _ in choices}
    others = [(value, value.partition(":")[2] or value) for value in dict.fromkeys(keep) if value not in offered]
    if others:
        groups.append(("No longer available", others))
    return groups


class PolicyForm(forms.Form):
    name = forms.CharField(max_length=200, validators=[single_line_validator])
    key = forms.CharField(
        max_length=64,
        validators=[key_validator],
        help_text="Stable identifier for manifests, teams and KPIs, e.g. standard. It cannot change later.",
    )
    mitigation_due = DurationInput(
        label="Owner's time to file a mitigation path",
        help_text="From the breach; escalation starts when it passes without an approved path. E.g. 2d.",
    )
    ack_timeout = DurationInput(
        label="An acknowledgement pauses escalation for",
        help_text='"I am on it" from a level holds escalation this long, then the same level hears again. E.g. 4h.',
    )
    repeat = forms.IntegerField(
        min_value=0,
        max_value=9,
        initial=0,
        label="Extra passes",
        help_text="After the last level, run through all levels again this many times (0 to 9).",
        widget=forms.NumberInput(attrs={"class": "input-small"}),
    )

    def __init__(self, *args, org: Organization, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.org = org
        if editing:
            del self.fields["key"]

    def clean_key(self) -> str:
        # Shown with the other errors at once; services.policy_create checks it again, under its transaction.
        key = self.cleaned_data["key"]
        taken = EscalationPolicy.objects.for_org(self.org).filter(key=key).first()
        if taken is not None:
            archived = " (archived)" if taken.archived_at else ""
            raise forms.ValidationError(
                f'The key "{key}" belongs to the policy "{taken.name}"{archived}; pick another.'
            )
        return key


class LevelForm(forms.Form):
    targets = forms.MultipleChoiceField(
        label="Notify",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Pick at least one target."},
    )
    wait = DurationInput(label="Wait before the next level", help_text="E.g. 1d, 4h.")
    business_hours = forms.BooleanField(
        required=False,
        label="Business hours only",
        help_text="Notified only inside business hours; the wait counts only open time.",
    )

    def __init__(self, *args, choices: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["targets"].choices = choices

    def target_groups(self) -> list[dict]:
        """The choices by group, each option with its id and whether it is picked (the template draws checkboxes;
        the long groups, teams and people, start folded unless something in them is picked)."""
        picked = set(self["targets"].value() or [])
        groups = []
        for g, (group, options) in enumerate(self.fields["targets"].choices):
            rows = [
                {"value": value, "label": label, "checked": value in picked, "id": f"id_{self.prefix}-t{g}-{i}"}
                for i, (value, label) in enumerate(options)
            ]
            foldable = group in ("Teams", "People", "No longer available")
            groups.append({"label": group, "options": rows, "open": not foldable or any(r["checked"] for r in rows)})
        return groups


def posted_levels(data: QueryDict) -> list[dict]:
    """The editor's levels as posted, in order, unvalidated (for add/remove/move and for re-binding)."""
    try:
        count = min(max(int(data.get("level_count", 0)), 0), MAX_LEVELS)
    except ValueError:
        count = 0
    return [
        {
            "targets": data.getlist(f"level-{i}-targets"),
            "wait": data.get(f"level-{i}-wait", ""),
            "business_hours": bool(data.get(f"level-{i}-business_hours")),
        }
        for i in range(count)
    ]


def stored_levels(policy: EscalationPolicy) -> list[dict]:
    return [
        {"targets": list(lv.targets), "wait": format_duration(lv.wait), "business_hours": lv.business_hours}
        for lv in sorted(policy.levels.all(), key=lambda lv: lv.position)
    ]


def apply_op(levels: list[dict], op: str) -> tuple[list[dict], str, int | None]:
    """Adds, removes or moves a level. Returns the levels, what happened in words (announced to screen readers)
    and which level's heading takes the focus afterwards, so keyboard users stay with the level they moved."""
    verb, _, index = op.partition(":")
    levels = list(levels)
    i = int(index) if index.isdigit() else -1
    if verb == "add" and len(levels) < MAX_LEVELS:
        levels.append({"targets": [], "wait": "1d", "business_hours": False})
        return levels, f"Level {len(levels)} added.", len(levels) - 1
    if verb == "remove" and 0 <= i < len(levels):
        levels.pop(i)
        return levels, f"Level {i + 1} removed.", min(i, len(levels) - 1) if levels else None
    if verb == "up" and 0 < i < len(levels):
        levels[i - 1], levels[i] = levels[i], levels[i - 1]
        return levels, f"Level {i + 1} moved up: it is level {i} now.", i - 1
    if verb == "down" and 0 <= i < len(levels) - 1:
        levels[i + 1], levels[i] = levels[i], levels[i + 1]
        return levels, f"Level {i + 1} moved down: it is level {i + 2} now.", i + 1
    return levels, "", None


def level_forms(levels: list[dict], choices: list, bound: bool) -> list[LevelForm]:
    """One form per level: bound to re-check on save, else unbound with the values as initial (no errors shown)."""
    forms_ = []
    for i, level in enumerate(levels):
        prefix = f"level-{i}"
        if bound:
            data = QueryDict(mutable=True)
            data.setlist(f"{prefix}-targets", level["targets"])
            data[f"{prefix}-wait"] = level["wait"]
            if level["business_hours"]:
                data[f"{prefix}-business_hours"] = "on"
            forms_.append(LevelForm(data, prefix=prefix, choices=choices))
        else:
            forms_.append(LevelForm(prefix=prefix, initial=level, choices=choices))
    return forms_


class PolicyChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: EscalationPolicy) -> str:
        return f"{obj.name} ({obj.key})"


class DefaultsForm(forms.Form):
    """The organization's default policy and one field per team (`team_<id>`). Plain choices from one query:
    a ModelChoiceField per team would query the policies once per team."""

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        active = EscalationPolicy.objects.for_org(org).filter(archived_at=None).order_by("name")
        self.policies = {str(p.pk): p for p in active}
        by_key = {p.key: str(p.pk) for p in self.policies.values()}
        options = [(pk, f"{p.name} ({p.key})") for pk, p in self.policies.items()]
        inherited = self.policies.get(by_key.get(org.default_escalation, ""))
        self.fields["default"] = forms.ChoiceField(
            choices=[("", "(none: only the owner's task)"), *options],
            required=False,
            label="Organization default",
            initial=by_key.get(org.default_escalation, ""),
        )
        follow = "(the organization's default)" if inherited else "(none, like the organization)"
        self.teams = list(Team.objects.for_org(org).order_by("name"))
        for team in self.teams:
            self.fields[f"team_{team.pk}"] = forms.ChoiceField(
                choices=[("", follow), *options],
                required=False,
                label=team.name,
                initial=by_key.get(team.escalation, ""),
            )

    def _policy(self, name: str) -> EscalationPolicy | None:
        return self.policies.get(self.cleaned_data.get(name) or "")

    def default_policy(self) -> EscalationPolicy | None:
        return self._policy("default")

    def team_policies(self) -> dict[Team, EscalationPolicy | None]:
        return {team: self._policy(f"team_{team.pk}") for team in self.teams}


MAX_REPLAY_DAYS, DEFAULT_REPLAY_DAYS = 366, 90


class PreviewForm(forms.Form):
    """Which KPI to preview, and under which policy (the KPI's effective one when left empty)."""

    kpi = forms.ModelChoiceField(queryset=Kpi.objects.none(), label="KPI", empty_label=None)
    policy = PolicyChoiceField(
        queryset=EscalationPolicy.objects.none(), required=False, empty_label="(the KPI's effective policy)"
    )

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kpi"].queryset = Kpi.objects.for_org(org).filter(archived_at=None).order_by("name")
        self.fields["policy"].queryset = EscalationPolicy.objects.for_org(org).filter(archived_at=None)


class ReplayForm(forms.Form):
    """How far back the editor replays the draft over real episodes (escalations.policies.replay)."""

    days = forms.IntegerField(
        label="Days of history", min_value=1, max_value=MAX_REPLAY_DAYS, initial=DEFAULT_REPLAY_DAYS
    )
