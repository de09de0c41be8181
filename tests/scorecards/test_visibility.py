"""Scorecard viewers hold on every page, export and API listing: a member never reads the KPIs of a scorecard
they may not see, unless the KPI is also on one they may see or is their own."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from dependencies.models import Dependency
from escalations.models import Decision, ReviewSession
from governance.models import Role
from scorecards.models import Status
from tests.escalations.decisions.test_review import episode
from tests.factories import KpiFactory, MembershipFactory, TeamFactory
from tests.scorecards.factories import ScorecardFactory
from tests.scorecards.test_api import call

SECRET = "Gross margin secret"


@pytest.fixture
def board(tenant):
    """An executive-only scorecard with a red KPI of the finance team, which depends on the tenant's KPI."""
    finance = TeamFactory(organization=tenant.org, key="finance", name="Finance")
    secret = KpiFactory(
        organization=tenant.org,
        team=finance,
        owner=tenant.executive,
        key="fin.margin",
        name=SECRET,
        status=Status.OFF_TRACK,
    )
    card = ScorecardFactory(
        organization=tenant.org, key="board", name="Board", viewers=["role:executive"], kpis=[secret]
    )
    Dependency.objects.create(organization=tenant.org, upstream=tenant.kpi, downstream=secret, kind="drives_demand")
    tenant.secret, tenant.board = secret, card
    return tenant


def pages(t) -> dict[str, str]:
    slug = t.org.slug
    return {
        "overview": reverse("scorecards:overview", args=[slug]),
        "all KPIs": reverse("scorecards:kpi_list", args=[slug]),
        "all KPIs, searched": reverse("scorecards:kpi_list", args=[slug]) + "?q=margin",
        "open scorecard": reverse("scorecards:scorecard", args=[slug, t.scorecard.pk]),
        "my work": reverse("scorecards:my_work", args=[slug]),
        "dependencies": reverse("dependencies:dependency_graph", args=[slug]),
    }


def test_a_member_sees_the_executive_only_kpi_on_no_page(board):
    member = board.client(board.member)
    for name, url in pages(board).items():
        response = member.get(url)
        assert response.status_code == 200, name
        assert SECRET not in response.content.decode(), name
    assert member.get(reverse("scorecards:kpi_detail", args=[board.org.slug, board.secret.pk])).status_code == 404
    around = reverse("dependencies:dependency_graph", args=[board.org.slug]) + f"?around={board.secret.pk}"
    assert member.get(around).status_code == 404
    executive = board.client(board.executive)
    assert SECRET in executive.get(pages(board)["all KPIs"]).content.decode()
    assert executive.get(reverse("scorecards:kpi_detail", args=[board.org.slug, board.secret.pk])).status_code == 200


def test_a_members_personal_token_does_not_list_or_read_the_executive_only_kpi(board):
    listed = call(board.personal_token, "get", "kpis")
    assert listed.status_code == 200
    assert [k["key"] for k in listed.json()] == ["ops.throughput"]
    for path in ("kpis/fin.margin", "kpis/fin.margin/measurements"):
        assert call(board.personal_token, "get", path).status_code == 404
    # The organization's own token reads everything.
    assert {k["key"] for k in call(board.token, "get", "kpis").json()} == {"ops.throughput", "fin.margin"}


def test_the_owner_and_a_viewer_of_another_scorecard_with_it_see_the_kpi(board):
    owner = MembershipFactory(organization=board.org, role=Role.MEMBER)
    board.secret.owner = owner
    board.secret.save()
    assert SECRET in board.client(owner).get(pages(board)["all KPIs"]).content.decode()
    assert SECRET not in board.client(board.member).get(pages(board)["all KPIs"]).content.decode()
    board.scorecard.kpis.add(board.secret)  # also on a scorecard every member sees
    assert SECRET in board.client(board.member).get(pages(board)["all KPIs"]).content.decode()


@pytest.fixture
def decided(board):
    """A closed review that accepted the risk on the executive-only KPI, and its open episode."""
    now = timezone.now()
    session = ReviewSession.objects.create(
        organization=board.org, title="Steering", started_by=board.executive.user, started_at=now, closed_at=now
    )
    Decision.objects.create(
        organization=board.org,
        kind=Decision.Kind.RISK_ACCEPTED,
        kpi=board.secret,
        session=session,
        decided_by=board.executive.user,
        reason="Margin squeeze accepted",
        kpi_status=board.secret.status,
    )
    episode(board.secret, 2)
    board.session = session
    return board


def test_a_member_sees_no_decision_or_episode_of_the_executive_only_kpi(decided):
    slug, member = decided.org.slug, decided.client(decided.member)
    for name in ("escalations:decision_log", "escalations:workstream_list"):
        response = member.get(reverse(name, args=[slug]))
        assert response.status_code == 200 and SECRET not in response.content.decode(), name
    minutes = member.get(reverse("escalations:review_session_detail", args=[slug, decided.session.pk]))
    assert minutes.status_code == 200 and "Margin squeeze accepted" not in minutes.content.decode()
    assert member.get(reverse("escalations:kpi_decisions", args=[slug, decided.secret.pk])).status_code == 404
    executive = decided.client(decided.executive)
    assert SECRET in executive.get(reverse("escalations:decision_log", args=[slug])).content.decode()
    assert SECRET in executive.get(reverse("escalations:workstream_list", args=[slug])).content.decode()
    minutes = executive.get(
        reverse("escalations:review_session_detail", args=[slug, decided.session.pk])
    ).content.decode()
    assert "Margin squeeze accepted" in minutes


def test_a_members_steering_pack_leaves_out_the_executive_only_kpi(decided):
    board, session = decided, decided.session
    url = reverse("escalations:review_session_pack", args=[board.org.slug, session.pk])

    def text(membership) -> str:
        response = board.client(membership).get(url)
        assert response.status_code == 200
        return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)

    assert SECRET in text(board.executive) and "Margin squeeze accepted" in text(board.executive)
    member = text(board.member)
    assert SECRET not in member and "Margin squeeze accepted" not in member
