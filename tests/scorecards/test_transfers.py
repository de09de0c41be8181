from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from governance.models import AuditEvent
from scorecards.models import OwnershipTransfer
from scorecards.services import ownership_transfer_decide, ownership_transfer_request


def test_it_moves_ownership_only_after_approval_end_to_end(tenant):
    """The owner asks in the browser, an executive approves in the browser, the audit log says why."""
    tenant.transfer.delete()  # start without the fixture's pending request
    kpi, owner = tenant.kpi, tenant.lead
    url = reverse("scorecards:transfer_request", kwargs={"org_slug": tenant.org.slug, "kpi_id": kpi.pk})
    response = tenant.client(owner).post(url, {"to_owner": tenant.member.pk, "reason": "Moving to Sales"})
    assert response.status_code == 302
    kpi.refresh_from_db()
    assert kpi.owner == owner  # still locked
    transfer = OwnershipTransfer.objects.get(kpi=kpi, state="pending")
    page = tenant.client(tenant.executive).get(reverse("scorecards:kpi_detail", args=[tenant.org.slug, kpi.pk]))
    assert b"waiting for approval" in page.content and b"Approve" in page.content

    decide = reverse("escalations:transfer_decide", kwargs={"org_slug": tenant.org.slug, "transfer_id": transfer.pk})
    tenant.client(tenant.executive).post(decide, {"decision": "approve", "note": "Agreed in staff meeting"})
    kpi.refresh_from_db()
    transfer.refresh_from_db()
    assert kpi.owner == tenant.member
    assert (transfer.state, transfer.decided_by) == ("approved", tenant.executive.user)
    event = AuditEvent.objects.get(verb="kpi.owner_changed")
    assert event.after["reason"] == "Moving to Sales" and event.actor == tenant.executive.user
    assert event.before["owner"].startswith(owner.user.name)


def test_the_requester_cannot_approve_their_own_request(tenant):
    transfer = tenant.transfer  # requested by the lead (the owner)
    tenant.lead.role = "executive"
    tenant.lead.save()
    with pytest.raises(PermissionDenied, match="the requester never decides a transfer"):
        ownership_transfer_decide(transfer=transfer, decider=tenant.lead, approve=True)


def test_a_member_cannot_approve_and_gets_403_in_the_browser(tenant):
    url = reverse(
        "escalations:transfer_decide", kwargs={"org_slug": tenant.org.slug, "transfer_id": tenant.transfer.pk}
    )
    response = tenant.client(tenant.member).post(url, {"decision": "approve"})
    assert response.status_code == 403
    tenant.kpi.refresh_from_db()
    assert tenant.kpi.owner == tenant.lead
    assert AuditEvent.objects.filter(verb="security.permission_denied").exists()


def test_a_member_who_is_not_the_owner_cannot_request_a_transfer(tenant):
    tenant.transfer.delete()
    with pytest.raises(PermissionDenied):
        ownership_transfer_request(kpi=tenant.kpi, requester=tenant.member, to_owner=tenant.member, reason="Mine")


def test_only_one_pending_transfer_per_kpi(tenant):
    with pytest.raises(ValidationError, match="already waiting"):
        ownership_transfer_request(kpi=tenant.kpi, requester=tenant.admin, to_owner=tenant.executive, reason="x")


def test_a_rejected_transfer_leaves_the_owner_and_is_audited(tenant):
    ownership_transfer_decide(transfer=tenant.transfer, decider=tenant.admin, approve=False, note="Not now")
    tenant.kpi.refresh_from_db()
    assert tenant.kpi.owner == tenant.lead
    assert AuditEvent.objects.filter(verb="kpi.transfer_rejected", after__note="Not now").exists()
    with pytest.raises(ValidationError, match="already rejected"):
        ownership_transfer_decide(transfer=tenant.transfer, decider=tenant.executive, approve=True)


def test_approval_fails_when_the_owner_changed_meanwhile(tenant):
    tenant.kpi.owner = tenant.executive
    tenant.kpi.save()
    with pytest.raises(ValidationError, match="changed owner"):
        ownership_transfer_decide(transfer=tenant.transfer, decider=tenant.admin, approve=True, note="Agreed")


def test_the_settings_form_cannot_change_the_owner(tenant):
    url = reverse("scorecards:kpi_settings", kwargs={"org_slug": tenant.org.slug, "kpi_id": tenant.kpi.pk})
    data = _settings(tenant.kpi) | {"owner": tenant.member.pk}
    response = tenant.client(tenant.admin).post(url, data)
    assert response.status_code == 302
    tenant.kpi.refresh_from_db()
    assert tenant.kpi.owner == tenant.lead


def _settings(kpi, **changes) -> dict:
    data = {
        "name": kpi.name,
        "team": kpi.team_id,
        "unit": kpi.unit,
        "direction": kpi.direction,
        "aggregate_fn": "last",
        "target_value": kpi.target_value,
        "warning": "1000",
        "critical": "800",
        "cadence": "1d",
        "stale_after": "3d",
        "evaluate_every": "1h",
        "pending_for": "2h",
        "keep_for": "1h",
    }
    return data | changes
