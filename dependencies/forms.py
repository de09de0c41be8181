"""Forms of the dependency pages; the KPI choices are scoped to the organization (no foreign ids accepted)."""

from __future__ import annotations

from django import forms

from dependencies.models import Dependency
from scorecards.forms import DurationField
from scorecards.models import Kpi


class KpiChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Kpi) -> str:
        return f"{obj.name} ({obj.key})"


class DependencyForm(forms.Form):
    """An edge seen from one KPI's page: "this KPI depends on X" (X upstream) or "this KPI drives X"."""

    UPSTREAM, DOWNSTREAM = "upstream", "downstream"

    relation = forms.ChoiceField(
        label="This KPI", choices=[(UPSTREAM, "depends on"), (DOWNSTREAM, "drives")], initial=UPSTREAM
    )
    other = KpiChoiceField(label="KPI", queryset=Kpi.objects.none(), empty_label="Pick a KPI")
    kind = forms.ChoiceField(choices=[c for c in Dependency.Kind.choices if c[0] != Dependency.Kind.COMPUTED_FROM])
    lag = DurationField(required=False, help_text="Optional: how long a change takes to show downstream, e.g. 2w")
    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, kpi: Kpi, **kwargs):
        super().__init__(*args, **kwargs)
        self.kpi = kpi
        field = self.fields["other"]
        field.queryset = (
            Kpi.objects.for_org(kpi.organization)
            .filter(archived_at=None)
            .exclude(pk=kpi.pk)
            .select_related("team")
            .order_by("team__name", "name", "pk")
        )
        for name in ("relation", "other", "kind", "lag", "note"):
            self.fields[name].widget.attrs["id"] = f"dep-{name}"

    def grouped_choices(self) -> list[tuple[str, list[tuple[int, str]]]]:
        """The KPI choices grouped by team (one query), for an <optgroup> per team."""
        groups: dict[str, list[tuple[int, str]]] = {}
        for kpi in self.fields["other"].queryset:
            groups.setdefault(kpi.team.name, []).append((kpi.pk, f"{kpi.name} ({kpi.key})"))
        return list(groups.items())

    def edge(self) -> dict:
        """The service's arguments: which KPI is upstream follows from the relation."""
        data = self.cleaned_data
        pair = (data["other"], self.kpi) if data["relation"] == self.UPSTREAM else (self.kpi, data["other"])
        return {
            "upstream": pair[0],
            "downstream": pair[1],
            "kind": data["kind"],
            "lag": data["lag"],
            "note": data["note"],
        }
