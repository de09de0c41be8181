"""Slack in a browser: an admin connects the workspace through Slack's OAuth flow (a fake authorize page on
loopback sends the browser back with a code), members with a Slack account are linked by email, and a member
without one links with the code their page shows, sent as `/steerco link CODE`."""

from __future__ import annotations

from playwright.sync_api import expect

from escalations.models import SlackLink
from tests.escalations.slack.conftest import fake_slack, signed  # noqa: F401  (the fixture, and Slack's signing)
from tests.factories import PASSWORD


def test_an_admin_connects_slack_and_a_member_links_with_a_code(session, tenant, live_server, fake_slack, settings):  # noqa: F811
    settings.SITE_URL = live_server.url
    fake_slack.users_by_email = {tenant.admin.user.email: "UADMIN", tenant.executive.user.email: "UEXEC"}
    admin = session()
    admin.login(tenant.admin.user.email, PASSWORD)
    page = admin.page
    page.goto(f"/o/{tenant.org.slug}/settings/slack/")
    expect(page.get_by_role("heading", name="Not connected")).to_be_visible()
    page.get_by_role("link", name="Connect Slack").click()  # to the fake authorize page and back
    expect(page.get_by_text("Connected to Acme Slack; 2 member(s) linked.")).to_be_visible()
    expect(page.get_by_role("cell", name="Not linked").first).to_be_visible()
    admin.screenshot("slack-settings-1280")
    admin.assert_clean()

    member = session(width=390)
    member.login(tenant.member.user.email, PASSWORD)
    page = member.page
    page.goto(f"/o/{tenant.org.slug}/me/slack/")
    command = page.locator("#link-command").inner_text()
    member.screenshot("slack-account-390")
    answer = signed(
        "/slack/commands/", f"team_id=T0ACME&user_id=UMEMBER&text={command.split()[1]}+{command.split()[2]}"
    )
    assert answer.json()["text"].startswith("Linked")
    page.reload()
    expect(page.get_by_text("Linked to Slack user UMEMBER")).to_be_visible()
    page.get_by_role("button", name="Unlink").click()
    expect(page.get_by_text("Your Slack account is unlinked")).to_be_visible()
    assert not SlackLink.objects.filter(membership=tenant.member).exists()
    member.assert_clean()
