"""Enterprise identity in a browser: an admin connects an identity provider; the login page asks for the email
first and sends a covered address to the provider."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.factories import PASSWORD


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
