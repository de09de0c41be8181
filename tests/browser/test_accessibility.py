"""axe-core (from npm) in the same Chromium, on the main pages, at desktop and phone width: no serious or critical
accessibility violation. The pages run under their real CSP: axe is injected through the DevTools protocol, which
a page's policy does not govern, so nothing is relaxed for the test."""

from __future__ import annotations

import pytest

from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

BLOCKING = ("serious", "critical")


def org_pages(t) -> list[str]:
    ep = t.episode  # an open workstream with a path, an action, a task and a notification
    o = f"/o/{t.org.slug}"
    return [
        f"{o}/",
        f"{o}/kpis/",
        f"{o}/scorecards/{t.scorecard.pk}/",
        f"{o}/kpis/{t.kpi.pk}/",
        f"{o}/okrs/",
        f"{o}/me/",
        f"{o}/workstreams/",
        f"{o}/workstreams/{ep.workstream.pk}/",
        f"{o}/inbox/",
        f"{o}/notifications/",
        f"{o}/notifications/settings/",
        f"{o}/microsoft-teams/",
        f"{o}/deliveries/",
        f"{o}/escalation/",
        f"{o}/escalation/new/",
        f"{o}/escalation/preview/?kpi={t.kpi.pk}",
        f"{o}/dependencies/",
        f"{o}/dependencies/matrix/",
        f"{o}/review/",
        f"{o}/review/sessions/",
        f"{o}/decisions/",
        f"{o}/health/",
        f"{o}/reports/",
        f"{o}/reports/new/",
        f"{o}/reports/{t.report_subscription.pk}/",
        f"{o}/teams/",
        f"{o}/members/",
        f"{o}/audit/",
        f"{o}/api-tokens/",
        f"{o}/settings/",
        f"{o}/single-sign-on/",
        f"{o}/teams/999999/",  # the 404 page
    ]


def run_axe(page, axe_source: str) -> list[dict]:
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source)
    results = page.evaluate("async () => (await window.axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        {
            "page": page.url,
            "rule": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"][:5]],
        }
        for v in results
        if v["impact"] in BLOCKING
    ]


# At phone width the pages whose layout changes most: wide tables that scroll, forms that stack.
PHONE_PAGES = {
    "/",
    "/kpis/",
    "/kpis/{kpi}/",
    "/inbox/",
    "/workstreams/{ws}/",
    "/escalation/new/",
    "/review/",
    "/health/",
    "/reports/new/",
    "/members/",
    "/audit/",
}


@pytest.mark.parametrize("width", [1280, 390])
def test_the_main_pages_have_no_serious_accessibility_violations(session, tenant, stranger_tenant, axe_source, width):
    s = session(width=width)
    page = s.page
    page.goto("/login/")
    violations = run_axe(page, axe_source)
    s.login(tenant.admin.user.email, PASSWORD)
    pages = org_pages(tenant)
    if width < 800:
        ids = {"kpi": tenant.kpi.pk, "ws": tenant.episode.workstream.pk}
        phone = {f"/o/{tenant.org.slug}{p.format(**ids)}" for p in PHONE_PAGES}
        pages = [url for url in pages if url in phone]
        assert len(pages) == len(PHONE_PAGES)
    for url in pages:
        page.goto(url)
        if page.locator("[hx-trigger~='load']").count():
            page.wait_for_load_state("networkidle")  # a panel that htmx loads at once is part of the page
        violations += run_axe(page, axe_source)
    if width < 800:  # the phone's navigation menu, opened
        page.get_by_text("Menu", exact=True).click()
        violations += run_axe(page, axe_source)
    assert not violations, "\n".join(str(v) for v in violations)
    s.assert_clean(allow=("404",))
