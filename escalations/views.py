from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from escalations import selectors
from escalations.models import Workstream
from governance.access import get_for_org_or_404


@require_GET
def workstream_detail(request: HttpRequest, workstream_id: int) -> HttpResponse:
    ws = get_for_org_or_404(request, selectors.workstreams(org=request.org), workstream_id)
    return render(
        request,
        "escalations/workstream.html",
        {
            "ws": ws,
            "path": selectors.latest_path(ws),
            "escalation": selectors.escalation_state(ws),
            "events": ws.events.select_related("actor"),
            "tasks": ws.tasks.select_related("assignee__user").order_by("-created_at"),
            "kinds": Workstream.Kind,
        },
    )
