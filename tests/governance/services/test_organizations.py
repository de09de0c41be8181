"""Creating an organization and changing its settings (governance.services.organizations)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from governance.models import AuditEvent, Organization, Role
from governance.services.organizations import organization_create, organization_update
from tests.factories import UserFactory


def test_it_creates_an_organization_with_its_creator_as_admin(db):
    user = UserFactory()
    org = organization_create(creator=user, slug="north-wind", name="North Wind", timezone_name="Asia/Tokyo")
    assert org.memberships.get().role == Role.ADMIN
    event = AuditEvent.objects.get(organization=org)
    assert (event.verb, event.actor, event.after["slug"]) == ("organization.created", user, "north-wind")


@pytest.mark.parametrize("slug", ["Upper", "-dash", "dash-", "with space", "x" * 51, "ü"])
def test_it_refuses_a_malformed_slug(db, slug):
    with pytest.raises(ValidationError) as error:
        organization_create(creator=UserFactory(), slug=slug, name="X")
    assert "slug" in error.value.message_dict
    assert not Organization.objects.exists()


def test_it_refuses_a_taken_slug(tenant):
    with pytest.raises(ValidationError, match="taken"):
        organization_create(creator=UserFactory(), slug=tenant.org.slug, name="Copy")
    assert Organization.objects.count() == 1


def test_it_refuses_an_unknown_timezone(db):
    with pytest.raises(ValidationError, match="IANA"):
        organization_create(creator=UserFactory(), slug="tz", name="Tz", timezone_name="Mars/Olympus")


def test_it_audits_organization_changes_with_before_and_after(tenant):
    organization_update(org=tenant.org, actor=tenant.admin.user, name="Acme Global")
    event = AuditEvent.objects.filter(verb="organization.updated").get()
    assert event.changes == [("name", "Acme", "Acme Global")]


def test_an_unchanged_save_writes_no_audit_event(tenant):
    organization_update(org=tenant.org, actor=tenant.admin.user, name=tenant.org.name)
    assert not AuditEvent.objects.filter(verb="organization.updated").exists()
