"""The audit log: request ids, and the database keeping it append-only (governance.services.audit)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from governance.models import AuditEvent


def test_audit_events_carry_the_request_id(tenant):
    client = tenant.client(tenant.admin)
    client.post(
        f"/o/{tenant.org.slug}/settings/",
        {
            "name": "Renamed",
            "timezone": "Europe/Berlin",
            "business_days": ["mon"],
            "business_start": "08:00",
            "business_end": "16:00",
        },
        HTTP_X_REQUEST_ID="req-4711",
    )
    assert AuditEvent.objects.get(verb="organization.updated").request_id == "req-4711"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the append-only trigger is PostgreSQL's")
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE governance_auditevent SET verb = 'forged'",
        "DELETE FROM governance_auditevent",
    ],
)
def test_the_database_refuses_to_change_audit_events(tenant, statement):
    count = AuditEvent.objects.count()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert AuditEvent.objects.count() == count
    assert not AuditEvent.objects.filter(verb="forged").exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the append-only trigger is PostgreSQL's")
def test_the_orm_cannot_change_audit_events_either(tenant):
    event = AuditEvent.objects.first()
    event.verb = "forged"
    with pytest.raises(DatabaseError), transaction.atomic():
        event.save()
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.all().delete()
