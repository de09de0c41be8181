"""Forms of enterprise identity: the email-first login, the password form single sign-on may refuse, the
password reset it may refuse, and the admins' single sign-on settings."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm

from governance.forms import InvitationSignupForm
from governance.identity.models import domain_validator
from governance.identity.services import password_refusal
from governance.models import User, secret_name_validator
from governance.security import request_facts


class EmailStepForm(forms.Form):
    email = forms.EmailField(
        label="Work email", widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True})
    )


class SignupForm(InvitationSignupForm):
    """A new account: the invitation's form (name, password twice, Django's password validators) with the email
    the invitation would have given."""

    field_order = ["email", "name", "password1", "password2"]
    email = forms.EmailField(label="Work email", widget=forms.EmailInput(attrs={"autocomplete": "email"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, email="", **kwargs)

    def clean(self):
        self.email = (self.cleaned_data.get("email") or "").strip().lower()
        return super().clean()


class SsoAwareAuthenticationForm(AuthenticationForm):
    """Django's login form, refusing the password of a member whose organization requires single sign-on before
    the password is even checked (the operator's break-glass admins excepted)."""

    def clean(self):
        username = (self.cleaned_data.get("username") or "").strip()
        user = User.objects.filter(email__iexact=username).first() if username else None
        refusal = password_refusal(user=user, verb="security.password_login_refused", facts=request_facts(self.request))
        if refusal:
            raise forms.ValidationError(refusal, code="sso_required")
        return super().clean()


class SsoAwarePasswordResetForm(PasswordResetForm):
    """No reset email for a member whose organization requires single sign-on: their password is not how they log
    in. The page answers as for any address (it tells nobody whether an account exists); the audit log records it."""

    def get_users(self, email):
        for user in super().get_users(email):
            if not password_refusal(user=user, verb="security.password_reset_refused", facts={}):
                yield user


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class SingleSignOnForm(forms.Form):
    issuer = forms.URLField(
        assume_scheme="https",
        max_length=300,
        help_text="The provider's issuer URL; Steerco reads <code>/.well-known/openid-configuration</code> under it.",
    )
    client_id = forms.CharField(max_length=200, label="Client ID")
    client_secret_name = forms.CharField(
        max_length=64,
        validators=[secret_name_validator],
        initial="oidc_client_secret",
        label="Client secret (organization secret name)",
        help_text="Set the value on the Secrets page under this name; it is never stored here.",
    )
    domains = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="One email domain a line. People with these addresses are sent to the provider at login.",
    )
    groups_claim = forms.CharField(max_length=64, initial="groups", label="Groups claim")
    group_mapping = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        label="Groups to roles and teams",
        help_text="One <code>group = role</code> or <code>group = team:key</code> a line, e.g. "
        "<code>steerco-admins = admin</code>, <code>sales = team:sales</code>. Highest role wins; no group: member.",
    )
    enabled = forms.BooleanField(required=False, initial=True, label="Enabled")
    require_sso = forms.BooleanField(
        required=False,
        label="Require single sign-on",
        help_text="Members' password logins and password resets are refused (the operator's break-glass admins "
        "excepted).",
    )

    def clean_domains(self) -> list[str]:
        domains = [d.lower().lstrip("@") for d in _lines(self.cleaned_data["domains"])]
        for domain in domains:
            try:
                domain_validator(domain)
            except forms.ValidationError:
                raise forms.ValidationError(f"{domain} is not a domain name such as example.com.") from None
        if not domains:
            raise forms.ValidationError("Name at least one email domain.")
        return sorted(set(domains))

    def clean_group_mapping(self) -> list[list[str]]:
        mapping = []
        for number, line in enumerate(_lines(self.cleaned_data["group_mapping"]), start=1):
            group, sep, target = line.partition("=")
            if not sep or not group.strip() or not target.strip():
                raise forms.ValidationError(f'Line {number}: write "group = role" or "group = team:key".')
            mapping.append([group.strip(), target.strip()])
        return mapping

    @staticmethod
    def initial_for(sso) -> dict:
        if sso is None:
            return {}
        return {
            "issuer": sso.issuer,
            "client_id": sso.client_id,
            "client_secret_name": sso.client_secret_name,
            "domains": "\n".join(sso.organization.sso_domains.values_list("domain", flat=True)),
            "groups_claim": sso.groups_claim,
            "group_mapping": "\n".join(f"{g} = {t}" for g, t in sso.group_mapping),
            "enabled": sso.enabled,
            "require_sso": sso.require_sso,
        }


class CodeForm(forms.Form):
    code = forms.CharField(
        max_length=16,
        label="Code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}),
        help_text="The six digits your authenticator app shows, or one of your recovery codes.",
    )
