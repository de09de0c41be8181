"""The notification settings, the Microsoft Teams page and the delivery log in a real browser: a member takes the
daily digest and quiet hours, an admin sees a failing channel's banner; screenshots in var/screenshots."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from escalations.models import NotificationSettings
from tests.escalations.factories import NotificationFactory
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_member_takes_the_digest_and_quiet_hours_and_an_admin_reads_the_delivery_log(session, tenant):
    o = f"/o/{tenant.org.slug}"
    member = session()
    member.login(tenant.member.user.email, PASSWORD)
    page = member.page
    page.goto(f"{o}/notifications/settings/")
    page.get_by_label("Your mitigation path was approved: by email in the daily digest").check()
    page.get_by_label("Quiet hours").check()
    member.screenshot("notification-settings")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Notification settings saved.").wait_for()
    chosen = NotificationSettings.objects.get(membership=tenant.member)
    assert chosen.quiet_hours and chosen.digest_kinds == ["path_approved"]
    member.assert_clean()

    now = timezone.now()
    for i in range(5):
        NotificationFactory(
            recipient=tenant.member,
            channel="email",
            kind="resolved",
            subject=f"Episode {i} ended",
            created_at=now - timedelta(minutes=10 - i),
            attempts=2,
            next_attempt_at=now + timedelta(minutes=4),
            error="HTTP 429: slow down" if i % 2 else "SMTPServerDisconnected: Connection unexpectedly closed",
        )
    admin = session()
    admin.login(tenant.admin.user.email, PASSWORD)
    admin.page.goto(f"{o}/deliveries/")
    admin.page.get_by_text("Email keeps failing").wait_for()
    admin.screenshot("delivery-log")
    admin.page.select_option("select[name=state]", "delivered")
    admin.page.get_by_text("Nothing in this state on this channel yet.").wait_for()
    admin.page.goto(f"{o}/microsoft-teams/")
    admin.page.get_by_role("button", name="Connect Teams").wait_for()
    admin.screenshot("microsoft-teams")
    admin.assert_clean()


def test_the_settings_page_at_phone_width(session, tenant):
    s = session(width=390)
    s.login(tenant.member.user.email, PASSWORD)
    s.page.goto(f"/o/{tenant.org.slug}/notifications/settings/")
    s.screenshot("notification-settings-phone")
    s.assert_clean()
