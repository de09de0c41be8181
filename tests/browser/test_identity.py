"""Enterprise identity in a browser: an admin connects an identity provider; the login page asks for the email
first and sends a covered address to the provider."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.factories import PASSWORD
from tests.identity.oidc_provider.__main__ import CLIENT_SECRET
from tests.identity.oidc_provider.launch import running_provider
from tests.identity.test_two_factor import code


def test_an_admin_configures_single_sign_on_and_a_covered_address_goes_to_the_provider(session, tenant):
    for width in (1280, 390):
        s = session(width=width)
        s.login(tenant.admin.user.email, PASSWORD)
        page = s.page
        page.goto(f"/o/{tenant.org.slug}/single-sign-on/")
        expect(page.get_by_role("heading", name="Single sign-on", exact=True)).to_be_visible()
        page.get_by_label("Issuer").fill("https://idp.example.test")
        page.get_by_label("Client ID").fill("steerco")
        page.get_by_label("Domains").fill("sso-browser.test")
        page.get_by_label("Groups to roles and teams").fill("execs = executive\nnot a mapping")
        page.get_by_role("button", name="Save single sign-on").click()
        expect(page.get_by_text('Line 2: write "group = role"')).to_be_visible()
        page.get_by_label("Groups to roles and teams").fill("execs = executive")
        page.get_by_role("button", name="Save single sign-on").click()
        expect(page.get_by_text("Single sign-on saved.")).to_be_visible()
        expect(page.get_by_text("not set")).to_be_visible()  # the client secret still has to be set
        s.screenshot(f"single-sign-on-{width}")
        s.assert_clean(allow=("422",))  # the refused mapping's answer
        s.close()

    s = session(width=390)
    page = s.page
    page.goto("/login/")
    s.screenshot("login-email-step-390")
    page.get_by_label("Email").fill("someone@sso-browser.test")
    page.route("https://idp.example.test/**", lambda route: route.abort())
    page.get_by_role("button", name="Continue").click()
    # The provider is not reachable from the test: the refusal says so and the login page is one click away.
    expect(page.get_by_role("alert")).to_contain_text("discovery document")
    expect(page).to_have_url(re.compile(r"/sso/start/"))
    s.screenshot("sso-refused-390")


def test_a_new_customer_signs_up_creates_an_organization_and_follows_the_checklist(session, mailoutbox):
    s = session(width=390)
    page = s.page
    page.goto("/login/")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Work email").fill("founder@newco.test")
    page.get_by_label("Your name").fill("Fran Founder")
    page.get_by_label("Password", exact=True).fill("a-long-enough-passphrase-7")
    page.get_by_label("Password again").fill("a-long-enough-passphrase-7")
    s.screenshot("signup-390")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    link = re.search(r"https?://\S+(/signup/verify/\S+/)", mailoutbox[-1].body).group(1)
    page.goto(link)
    page.get_by_label("Name").fill("NewCo")
    page.get_by_label("Address").fill("newco")
    page.get_by_role("button", name=re.compile("Create")).click()
    page.goto("/o/newco/")
    checklist = page.get_by_role("region", name=re.compile("Get started"))
    expect(checklist).to_contain_text("0 of 4 done")
    s.screenshot("onboarding-390")
    checklist.get_by_role("link", name="Create your teams").click()
    expect(page).to_have_url(re.compile(r"/o/newco/teams/$"))
    s.assert_clean()
    s.close()

    s = session(width=1280)
    s.login("founder@newco.test", "a-long-enough-passphrase-7")
    expect(s.page.get_by_role("region", name=re.compile("Get started"))).to_be_visible()
    s.screenshot("onboarding-1280")
    s.assert_clean()


def test_an_admin_connects_the_provider_and_an_executive_logs_in_through_it(session, tenant, live_server, tmp_path):
    with running_provider(tmp_path, f"{live_server.url}/sso/callback/") as provider:
        s = session(width=1280)
        s.login(tenant.admin.user.email, PASSWORD)
        page = s.page
        page.goto(f"/o/{tenant.org.slug}/secrets/?name=oidc_client_secret")
        page.get_by_label("Value").fill(CLIENT_SECRET)
        page.get_by_role("button", name="Save secret").click()
        page.goto(f"/o/{tenant.org.slug}/single-sign-on/")
        page.get_by_label("Issuer").fill(provider.issuer)
        page.get_by_label("Client ID").fill("steerco")
        page.get_by_label("Domains").fill("acme-idp.test")
        page.get_by_label("Groups to roles and teams").fill("steerco-execs = executive")
        page.get_by_role("button", name="Save single sign-on").click()
        expect(page.get_by_text("Single sign-on saved.")).to_be_visible()
        s.close()

        s = session(width=390)
        page = s.page
        page.goto(provider.sign_in_url("cfo@acme-idp.test", "steerco-execs", name="Cora Finance"))  # at the provider
        page.goto("/login/")
        page.get_by_label("Email").fill("cfo@acme-idp.test")
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url(re.compile(rf"/o/{tenant.org.slug}/$"))
        expect(page.get_by_text("Cora Finance")).to_be_visible()
        expect(page.get_by_text("Executive", exact=False).first).to_be_visible()
        s.screenshot("sso-executive-landed-390")
        s.assert_clean()


def test_two_factor_enrolment_login_and_a_recovery_code(session, tenant):
    s = session(width=390)
    page = s.page
    s.login(tenant.admin.user.email, PASSWORD)
    page.get_by_role("link", name="Two-factor").click()
    key = page.locator("#totp-key").inner_text()
    page.get_by_label("Code").fill(code(key))
    page.get_by_role("button", name="Turn on").click()
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    s.screenshot("two-factor-recovery-codes-390")

    def password_step() -> None:
        page.goto("/login/")
        page.get_by_label("Email").fill(tenant.admin.user.email)
        page.get_by_role("button", name="Continue").click()
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()

    page.context.clear_cookies()
    password_step()
    s.screenshot("two-factor-login-390")
    page.get_by_label("Code").fill(code(key, 1))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(re.compile(rf"/o/{tenant.org.slug}/$"))

    page.context.clear_cookies()
    password_step()
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(re.compile(rf"/o/{tenant.org.slug}/$"))
    expect(page.get_by_text("You used a recovery code; 9 left")).to_be_visible()
    s.assert_clean()
