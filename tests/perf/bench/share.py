"""`make bench`: a share link's scorecard of 500 KPIs against the member's page of the same scorecard, side by side.

Builds a throwaway test database with one organization whose scorecard holds 500 KPIs of 90 daily points each, then
renders, in alternation, the member's scorecard page and the share link's page (which also checks the link and
logs the view), and prints the medians and their ratio. Figures are only comparable within one run.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

from escalations.collaboration.models import ShareLinkView  # noqa: E402
from escalations.collaboration.sharing import share_link_create  # noqa: E402
from governance import tenancy  # noqa: E402
from scorecards.models import Kpi, Scorecard  # noqa: E402
from tests.perf.bench.report import record  # noqa: E402
from tests.perf.bench.scorecard import ROUNDS, build  # noqa: E402


def main() -> None:
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0)
    old = runner.setup_databases()
    try:
        member, kpi_list_url, _ = build()
        org_slug = kpi_list_url.split("/")[2]
        kpis = list(Kpi.objects.filter(organization__slug=org_slug))
        org = kpis[0].organization
        card = Scorecard.objects.create(organization=org, key="board", name="Board")
        card.kpis.add(*kpis)
        owner = kpis[0].owner
        with tenancy.scope(organization=org.pk):
            _, token = share_link_create(by=owner, scorecard=card, label="Board", valid_for=timedelta(days=7))
        pages = {"member": f"/o/{org_slug}/scorecards/{card.pk}/", "share": f"/share/{token}/"}
        clients = {"member": member, "share": Client()}
        for name, url in pages.items():
            assert clients[name].get(url).status_code == 200  # warm caches and templates
        timings: dict[str, list[float]] = {name: [] for name in pages}
        for _ in range(ROUNDS):
            for name, url in pages.items():
                start = time.perf_counter()
                response = clients[name].get(url)
                timings[name].append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200 and response.content.count(b"<tr>") >= len(kpis)
        with CaptureQueriesContext(connection) as queries:
            clients["share"].get(pages["share"])
        member_ms, share_ms = statistics.median(timings["member"]), statistics.median(timings["share"])
        print(f"share link, {len(kpis)} KPIs, {connection.vendor}, median of {ROUNDS} rounds:")
        record("share", "member's scorecard page, 500 KPIs", member_ms, "ms")
        record("share", "share link page, 500 KPIs", share_ms, "ms")
        record("share", "queries, share link page", len(queries), "queries")
        ratio = share_ms / member_ms
        # The budget: the shared page within the member's page's time (noise allowed for: 10 %).
        record("share", "ratio share / member page", ratio, "x", goal="<= 1.1 x", met=ratio <= 1.1)
        assert ShareLinkView.objects.filter(outcome="shown").count() == ROUNDS + 2  # every view logged
    finally:
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
