"""Names are one line: control characters are refused wherever a name comes in, and a name stored before that
rule cannot break an email's header."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse

from escalations.engine.sweeps import process_status_changes
from escalations.models import EscalationPolicy, Notification
from escalations.notify.fanout import deliver_due
from governance.manifest.engine import apply_manifest, export_manifest
from governance.models import ApiToken, Organization, Role, single_line
from governance.services.invitations import invitation_create
from governance.services.organizations import organization_update
from scorecards.models import Kpi, StatusChange
from scorecards.services import kpi_update

BROKEN = "Sales\r\nBcc: everyone@evil.test"
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", [BROKEN, "Sales\nQ4", "Sales\tQ4", "Sales\x00", "Sales\u2028Q4", "Sales\x85"])
def test_services_refuse_a_name_with_control_characters(tenant, name):
    with pytest.raises(ValidationError) as error:
        kpi_update(kpi=tenant.kpi, actor=tenant.admin.user, name=name)
    assert "name" in error.value.message_dict
    with pytest.raises(ValidationError):
        organization_update(org=tenant.org, actor=tenant.admin.user, name=name)
    assert Kpi.objects.get(pk=tenant.kpi.pk).name == "Throughput"
    assert Organization.objects.get(pk=tenant.org.pk).name == "Acme"


def test_a_page_refuses_a_name_with_a_line_break_next_to_the_field(tenant):
    response = tenant.client(tenant.member).post(
        reverse("governance:api_tokens", args=[tenant.org.slug]), {"name": BROKEN, "kind": "personal"}
    )
    assert response.status_code == 422
    assert "without line breaks, tabs or other control characters" in response.content.decode()
    assert not ApiToken.objects.filter(name__contains="Bcc").exists()


def test_a_manifest_refuses_names_with_control_characters_by_path(tenant):
    document = export_manifest(tenant.org)
    document["kpis"][0]["name"] = BROKEN
    document["teams"][0]["name"] = "Ops\tteam"
    result = apply_manifest(document, org=tenant.org)
    message = "must be one line, without line breaks, tabs or other control characters"
    assert set(result.errors.lines()) == {f"kpis[0].name: {message}", f"teams[0].name: {message}"}
    assert Kpi.objects.get(pk=tenant.kpi.pk).name == "Throughput"


def test_a_kpi_whose_stored_name_has_a_line_break_still_gets_its_escalation_email_with_a_clean_subject(tenant):
    EscalationPolicy.objects.create(
        organization=tenant.org,
        key="standard",
        name="Standard",
        mitigation_due=timedelta(days=2),
        ack_timeout=timedelta(hours=4),
    )
    Kpi.objects.filter(pk=tenant.kpi.pk).update(name=BROKEN, escalation="standard")  # stored before the rule
    StatusChange.objects.create(
        organization=tenant.org, kpi=tenant.kpi, old="on_track", new="off_track", value=1, reason="x", changed_at=T0
    )
    with time_machine.travel(T0, tick=False):
        process_status_changes(now=T0)
        assert deliver_due(now=T0) >= 1
    assert not Notification.objects.filter(channel="email", delivered_at=None).exists()
    subjects = [message.subject for message in mail.outbox]
    assert subjects and all(subject.startswith("[Acme] ") for subject in subjects)
    assert any("Sales Bcc: everyone@evil.test" in subject for subject in subjects)
    assert all("\n" not in subject and "\r" not in subject for subject in subjects)
    assert all(not message.bcc and message.to == [tenant.lead.user.email] for message in mail.outbox)


def test_an_invitation_to_an_organization_whose_stored_name_has_a_line_break_is_sent(
    tenant, django_capture_on_commit_callbacks
):
    Organization.objects.filter(pk=tenant.org.pk).update(name="Acme\r\nInc")
    tenant.org.refresh_from_db()
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        invitation_create(org=tenant.org, actor=tenant.admin.user, email="new@acme.test", role=Role.MEMBER)
    assert [message.subject for message in mail.outbox] == ["You are invited to Acme Inc on Steerco"]


def test_single_line_joins_the_lines_of_a_stored_name():
    assert single_line(" Sales\r\n\tQ4 \x00 ") == "Sales Q4"
