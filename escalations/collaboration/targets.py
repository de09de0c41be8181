"""What comments and attachments may hang on: one line per kind of target.

A target is any organization-owned row a member may see; `visible` narrows its kind to the rows a member may see
(the KPI's visibility decides for its workstreams, paths and decisions), `page` is where it is discussed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.contenttypes.models import ContentType
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest
from django.urls import reverse

from escalations.models import Decision, MitigationPath, Workstream
from governance.access import get_for_org_or_404
from governance.models import Membership
from scorecards.manual import period_label
from scorecards.models import Kpi, ManualValue
from scorecards.selectors import visible_kpis


@dataclass(frozen=True)
class Target:
    name: str
    model: type[Model]
    visible: Callable[[Membership], QuerySet]
    page: Callable[[Model], str]
    describe: Callable[[Model], str]  # for a notification's subject: "the workstream of Throughput"

    def content_type(self) -> ContentType:
        return ContentType.objects.get_for_model(self.model)


def _of_visible_kpis(model: type[Model]) -> Callable[[Membership], QuerySet]:
    return lambda m: model.objects.filter(kpi__in=visible_kpis(Kpi.objects.for_org(m.organization), m))


def _workstream_page(ws) -> str:
    return reverse("escalations:workstream_detail", args=[ws.organization.slug, ws.pk])


TARGETS = {
    t.name: t
    for t in [
        Target(
            "kpi",
            Kpi,
            lambda m: visible_kpis(Kpi.objects.for_org(m.organization), m),
            lambda k: reverse("scorecards:kpi_detail", args=[k.organization.slug, k.pk]),
            lambda k: k.name,
        ),
        Target(
            "workstream",
            Workstream,
            _of_visible_kpis(Workstream),
            _workstream_page,
            lambda w: f"the workstream of {w.kpi.name}",
        ),
        Target(
            "path",
            MitigationPath,
            lambda m: MitigationPath.objects.filter(
                workstream__kpi__in=visible_kpis(Kpi.objects.for_org(m.organization), m)
            ),
            lambda p: _workstream_page(p.workstream),
            lambda p: f"the mitigation path of {p.workstream.kpi.name}",
        ),
        Target(
            "decision",
            Decision,
            _of_visible_kpis(Decision),
            lambda d: reverse("collaboration:decision_detail", args=[d.organization.slug, d.pk]),
            lambda d: f"the decision on {d.kpi.name}",
        ),
        Target(
            "manual_value",  # the evidence behind a number someone typed, for the approver to check
            ManualValue,
            _of_visible_kpis(ManualValue),
            lambda v: reverse("scorecards:kpi_detail", args=[v.organization.slug, v.kpi_id]),
            lambda v: f"the {period_label(v.kpi.manual.period, v.period_start)} value of {v.kpi.name}",
        ),
    ]
}


def target_of(obj: Model) -> Target:
    return next(t for t in TARGETS.values() if isinstance(obj, t.model))


def get_target_or_404(request: HttpRequest, name: str, object_id) -> tuple[Target, Model]:
    """The target `name`/`object_id` of the request's organization that its member may see; 404 otherwise."""
    target = TARGETS.get(name)
    if target is None:
        raise Http404("Nothing of that kind takes comments.")
    return target, get_for_org_or_404(request, target.visible(request.membership), object_id)
