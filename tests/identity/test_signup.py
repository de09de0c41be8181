"""Starting from zero: a person nobody invited creates an account, confirms the address, creates an organization
and is walked through its first steps."""

from __future__ import annotations

import re

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from governance import tenancy
from governance.models import AuditEvent, Membership, Role, User
from scorecards.models import DataSource, Measurement
from tests.factories import PASSWORD, KpiFactory, MembershipFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


NEW_PASSWORD = "correct-horse-battery-42"


@pytest.fixture
def sign_up(django_capture_on_commit_callbacks):
    """Posts the signup form; its email goes out when the transaction commits, as in production."""

    def post(client: Client, email: str, name: str = "Nora New"):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                "/signup/", {"email": email, "name": name, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
            )

    return post


def link(mail) -> str:
    return re.search(r"http://testserver(/signup/verify/\S+/)", mail.body).group(1)


def test_a_new_customer_signs_up_confirms_and_creates_an_organization(mailoutbox, sign_up):
    client = Client()
    response = sign_up(client, "Nora@Startup.test")
    assert response.status_code == 200 and "Check your inbox" in response.content.decode()
    user = User.objects.get(email="nora@startup.test")
    assert not user.is_active
    # No login before the address is confirmed.
    refused = client.post("/login/", {"username": "nora@startup.test", "password": NEW_PASSWORD})
    assert refused.status_code == 200 and "_auth_user_id" not in client.session

    [mail] = mailoutbox
    response = client.get(link(mail))
    assert response.status_code == 302 and response["Location"] == "/organizations/new/"
    response = client.post("/organizations/new/", {"name": "Startup", "slug": "startup", "timezone": "Europe/Berlin"})
    assert response.status_code == 302
    with tenancy.scope(user=user.pk):
        assert Membership.objects.get(user=user).role == Role.ADMIN

    overview = client.get("/o/startup/").content.decode()
    assert "Get started" in overview and "0 of 4 done" in overview
    assert AuditEvent.objects.filter(verb="security.signup_verified", object_id=str(user.pk)).exists()


def test_the_checklist_ticks_off_each_step_and_disappears_when_all_are_done(tenant):
    org = tenant.org
    admin = tenant.client(tenant.admin)
    assert "Get started" not in admin.get(f"/o/{org.slug}/").content.decode()  # the tenant has done everything
    DataSource.objects.filter(organization=org).delete()
    Measurement.objects.filter(organization=org).delete()
    page = admin.get(f"/o/{org.slug}/").content.decode()
    assert "3 of 4 done" in page and "Connect a first data source" in page
    assert "Get started" not in tenant.client(tenant.member).get(f"/o/{org.slug}/").content.decode()


def test_a_fresh_organization_counts_teams_invitations_and_kpis():
    admin = MembershipFactory(role=Role.ADMIN)
    client = Client()
    client.force_login(admin.user)
    url = f"/o/{admin.organization.slug}/"
    assert "0 of 4 done" in client.get(url).content.decode()
    team = TeamFactory(organization=admin.organization)
    MembershipFactory(organization=admin.organization)
    KpiFactory(organization=admin.organization, team=team, owner=admin)
    assert "3 of 4 done" in client.get(url).content.decode()


def test_an_address_with_an_account_gets_an_email_saying_so_and_the_page_tells_nothing(mailoutbox, sign_up):
    existing = UserFactory(email="taken@example.test")
    response = sign_up(Client(), "taken@example.test", name="Somebody Else")
    assert "Check your inbox" in response.content.decode()
    [mail] = mailoutbox
    assert "already has one" in mail.body and "/signup/verify/" not in mail.body
    existing.refresh_from_db()
    assert existing.check_password(PASSWORD) and existing.is_active


def test_signing_up_again_replaces_an_unconfirmed_accounts_password(mailoutbox, sign_up):
    sign_up(Client(), "squat@example.test", name="Squatter")
    sign_up(Client(), "squat@example.test", name="Real Owner")
    user = User.objects.get(email="squat@example.test")
    assert user.name == "Real Owner" and user.check_password(NEW_PASSWORD)
    assert Client().get(link(mailoutbox[0])).status_code == 302  # either link confirms the same account


def test_an_expired_or_altered_link_is_refused_with_a_way_forward(mailoutbox, sign_up):
    sign_up(Client(), "late@example.test")
    url = link(mailoutbox[0])
    assert Client().get(url[:-3] + "xx/").status_code == 410
    with time_machine.travel(timezone.now() + timezone.timedelta(days=3)):
        response = Client().get(url)
    assert response.status_code == 410 and "expired" in response.content.decode()
    assert not User.objects.get(email="late@example.test").is_active


def test_bad_input_keeps_what_was_typed_and_says_what_is_wrong():
    response = Client().post(
        "/signup/", {"email": "not-an-email", "name": "Ann", "password1": "short", "password2": "other"}
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "Enter a valid email address" in page and "The two passwords differ" in page and 'value="Ann"' in page
