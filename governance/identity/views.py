"""Pages of enterprise identity: the email-first login, the single sign-on round trip and its admin page."""

from __future__ import annotations

import hashlib
from base64 import b32encode
from urllib.parse import parse_qs, urlencode, urlparse

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods
from django_otp import login as otp_login
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from governance import tenancy
from governance.access import admin_required
from governance.forms import apply_errors
from governance.identity import oidc, services, two_factor
from governance.identity.forms import (
    CodeForm,
    EmailStepForm,
    SignupForm,
    SingleSignOnForm,
    SsoAwareAuthenticationForm,
)
from governance.identity.models import SingleSignOn
from governance.models import Secret
from governance.secrets import SecretMissing
from governance.security import client_ip, request_facts, within_limit
from governance.selectors import secret_value
from governance.services.audit import audit_log, audit_security_event

# Where the session remembers which organization a login round trip (its `state`) belongs to.
STATE_ORGANIZATIONS = "identity_sso_states"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


class EmailFirstLoginView(auth_views.LoginView):
    """Asks for the email first: an address of a domain an organization's single sign-on covers goes to its
    identity provider; any other gets the password form (which single sign-on may still refuse)."""

    authentication_form = SsoAwareAuthenticationForm
    redirect_authenticated_user = True

    def get(self, request, *args, **kwargs):
        email = request.GET.get("email", "").strip()
        # `password` asks for the password form even for a covered address: the break-glass admins' way in when
        # the identity provider is down (anyone else's password is refused where single sign-on is required).
        wants_sso = not request.GET.get("password")
        sso = services.sso_for_email(email) if wants_sso and EmailStepForm({"email": email}).is_valid() else None
        if sso is not None:
            # A page that moves on by itself, not a redirect: the email step is a form, and the policy's
            # `form-action 'self'` stops a form's redirects to another origin (the provider's).
            start = f"{reverse('identity:start')}?{urlencode({'email': email, 'next': self.get_redirect_url()})}"
            return render(request, "identity/sso_continue.html", {"start": start, "sso": sso})
        return super().get(request, *args, **kwargs)

    def form_valid(self, form):
        """A password that is right is half a login for someone with a second factor: the code comes next."""
        user = form.get_user()
        if not two_factor.has_second_factor(user):
            return super().form_valid(form)
        two_factor.start_pending(self.request.session, user, self.get_success_url())
        return redirect("identity:login_verify")

    def get_initial(self):
        return {"username": self.request.GET.get("email", "").strip()}

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        email_given = any(self.request.GET.get(k) for k in ("email", "password")) or self.request.method == "POST"
        context["email_step"] = None if email_given else EmailStepForm()
        return context


class OrganizationAuthenticationRequestView(OIDCAuthenticationRequestView):
    """The library's authorization request (state, nonce, PKCE S256) to the organization's provider."""

    def __init__(self, **kwargs):  # the library's reads its one provider from settings
        super(OIDCAuthenticationRequestView, self).__init__(**kwargs)

    def get_settings(self, attr, *args):
        return oidc.library_setting(attr, *args)

    def get_extra_params(self, request):
        return {"login_hint": request.GET.get("email", "")}


@require_GET
def sso_start(request: HttpRequest) -> HttpResponse:
    email = request.GET.get("email", "").strip()
    sso = services.sso_for_email(email) if EmailStepForm({"email": email}).is_valid() else None
    if sso is None:
        messages.error(request, "No organization's single sign-on covers that address; log in with your password.")
        return redirect(f"{reverse('login')}?{urlencode({'email': email})}")
    try:
        document = oidc.discovery(sso.issuer)
    except oidc.ProviderError as e:
        return _failure(request, sso, str(e))
    view = OrganizationAuthenticationRequestView()
    view.OIDC_OP_AUTH_ENDPOINT = document["authorization_endpoint"]
    view.OIDC_RP_CLIENT_ID = sso.client_id
    view.request = request
    response = view.get(request)
    state = parse_qs(urlparse(response["Location"]).query)["state"][0]
    request.session.setdefault(STATE_ORGANIZATIONS, {})[state] = sso.organization_id
    request.session.modified = True
    return response


class OrganizationCallbackView(OIDCAuthenticationCallbackView):
    def get_settings(self, attr, *args):
        return oidc.library_setting(attr, *args)


@require_GET
def sso_callback(request: HttpRequest) -> HttpResponse:
    """The provider's redirect back: the state must be one this session started, then the library's code exchange
    and ID token check against that organization's provider."""
    state = request.GET.get("state", "")
    org_id = request.session.get(STATE_ORGANIZATIONS, {}).pop(state, None)
    flow = request.session.get("oidc_states", {}).pop(state, None)
    request.session.modified = True
    sso = services.sso_for_org(org_id) if org_id is not None else None
    if sso is None or flow is None:
        return _failure(request, sso, "The sign-in came back with a state this browser did not start.")
    if request.GET.get("error") or not request.GET.get("code"):
        reason = request.GET.get("error_description") or request.GET.get("error") or "no authorization code"
        return _failure(request, sso, f"The identity provider refused the sign-in: {reason}")
    with tenancy.scope(organization=sso.organization_id):
        try:
            client_secret = secret_value(org=sso.organization, name=sso.client_secret_name)
            backend = oidc.OrganizationOIDCBackend(sso=sso, client_secret=client_secret, sign_in=services.sso_sign_in)
        except (SecretMissing, oidc.ProviderError) as e:
            return _failure(request, sso, str(e))
        user = backend.authenticate(request, nonce=flow.get("nonce"), code_verifier=flow.get("code_verifier"))
    if user is None or not user.is_active:
        return _failure(request, sso, backend.refusal or "The account is not active.")
    view = OrganizationCallbackView()
    view.request, view.user = request, user
    user.backend = MODEL_BACKEND
    with tenancy.scope(organization=sso.organization_id):
        audit_log(org=sso.organization, actor=user, verb="identity.sso_login", obj=user, after=request_facts(request))
    response = view.login_success()
    request.session[two_factor.SSO_SESSION] = True  # after login, which starts a new session
    return response


def _failure(request: HttpRequest, sso: SingleSignOn | None, reason: str) -> HttpResponse:
    """The refusal, audited under the organization when it is known, and the login page saying why."""
    facts = {"reason": reason[:500], **request_facts(request)}
    if sso is not None:
        with tenancy.scope(organization=sso.organization_id):
            audit_log(org=sso.organization, actor=None, verb="security.sso_login_refused", after=facts)
    else:
        audit_security_event(verb="security.sso_login_refused", user=None, after=facts)
    return render(request, "identity/sso_failed.html", {"reason": reason, "sso": sso}, status=403)


# --- the admins' page -----------------------------------------------------------------------------


@admin_required
@require_http_methods(["GET", "POST"])
def sso_settings(request: HttpRequest) -> HttpResponse:
    sso = SingleSignOn.objects.for_org(request.org).first()
    form = SingleSignOnForm(request.POST or None, initial=SingleSignOnForm.initial_for(sso))
    if request.method == "POST" and form.is_valid():
        try:
            services.sso_configure(org=request.org, actor=request.user, **form.cleaned_data)
        except ValidationError as e:
            apply_errors(form, e)
        else:
            messages.success(request, "Single sign-on saved.")
            return redirect("identity:sso_settings", org_slug=request.org.slug)
    context = {
        "form": form,
        "sso": sso,
        "callback_url": request.build_absolute_uri(reverse("identity:callback")),
        "secret_set": sso is not None
        and Secret.objects.for_org(request.org).filter(name=sso.client_secret_name).exists(),
    }
    return render(request, "identity/sso_settings.html", context, status=422 if form.errors else 200)


# --- starting from zero ---------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """A new account for someone nobody invited; the emailed link activates it and leads to a new organization."""
    if request.user.is_authenticated:
        return redirect("governance:organization_create")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"].strip().lower()
        if services.sso_for_email(email):
            messages.info(request, "Your organization signs in through its identity provider: continue there.")
            return redirect(f"{reverse('login')}?{urlencode({'email': email})}")
        digest = hashlib.sha256(email.encode()).hexdigest()  # no address in the cache's keys
        if within_limit(f"signup:email:{digest}", settings.SIGNUP_EMAIL_LIMIT) and within_limit(
            f"signup:ip:{client_ip(request)}", settings.PASSWORD_RESET_IP_LIMIT
        ):
            services.signup_request(
                email=email,
                name=form.cleaned_data["name"],
                password=form.cleaned_data["password1"],
                base_url=request.build_absolute_uri("/").rstrip("/"),
            )
        return render(request, "identity/signup_sent.html", {"email": email})
    return render(request, "identity/signup.html", {"form": form}, status=422 if form.errors else 200)


@require_GET
def signup_verify(request: HttpRequest, token: str) -> HttpResponse:
    try:
        user = services.signup_verify(token=token)
    except ValidationError as e:
        return render(request, "identity/signup_invalid.html", {"error": e.messages[0]}, status=410)
    login(request, user, backend=MODEL_BACKEND)
    messages.success(request, "Your email address is confirmed. Create your organization to start.")
    return redirect("governance:organization_create")


# --- two-factor authentication ------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def login_verify(request: HttpRequest) -> HttpResponse:
    """The second half of a password login: a code from the authenticator app or a recovery code."""
    user = two_factor.pending_user(request.session)
    if user is None:
        messages.error(request, "Log in again: the password step was too long ago.")
        return redirect("login")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            device = two_factor.verify(user, form.cleaned_data["code"], facts=request_facts(request))
        except two_factor.Throttled as e:
            form.add_error("code", str(e))
            return render(request, "identity/login_verify.html", {"form": form}, status=429)
        if device is not None:
            next_url = request.session[two_factor.PENDING]["next"]
            login(request, user, backend=MODEL_BACKEND)
            otp_login(request, device)
            if device.persistent_id.startswith("otp_static"):
                left = device.token_set.count()
                messages.warning(request, f"You used a recovery code; {left} left. Make new ones under Two-factor.")
            return redirect(next_url)
        form.add_error("code", "That code is not right (or was used already). Try the newest one from your app.")
    return render(request, "identity/login_verify.html", {"form": form}, status=422 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def two_factor_settings(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator app (its key, shown once it is made), confirm it with a code, and see the recovery
    codes once; or make new recovery codes, or turn two-factor off."""
    user, codes = request.user, None
    form = CodeForm(request.POST or None)
    enabled = two_factor.has_second_factor(user)
    action = request.POST.get("action", "")
    if request.method == "POST" and form.is_valid():
        if not enabled:
            codes = two_factor.enable(user, form.cleaned_data["code"])
            if codes is None:
                form.add_error("code", "That code is not right: check the phone's clock, and type the newest code.")
            else:
                otp_login(request, two_factor.authenticator(user))
        elif _verified(request, form):
            if action == "off":
                two_factor.disable(user)
                messages.success(request, "Two-factor authentication is off.")
                return redirect("identity:two_factor")
            codes = two_factor.new_recovery_codes(user)  # the page's other button
    enabled = two_factor.has_second_factor(user)
    device = None if enabled else two_factor.authenticator(user)
    context = {
        "form": CodeForm() if codes else form,
        "enabled": enabled,
        "codes": codes,
        "key": b32encode(device.bin_key).decode() if device else "",
        "config_url": device.config_url if device else "",
        "next": url_has_allowed_host_and_scheme(request.GET.get("next", ""), allowed_hosts={request.get_host()})
        and request.GET.get("next"),
    }
    return render(request, "identity/two_factor.html", context, status=422 if form.errors else 200)


def _verified(request: HttpRequest, form: CodeForm) -> bool:
    """Whether the form's code is the user's; says why not on the form."""
    try:
        if two_factor.verify(request.user, form.cleaned_data["code"], facts=request_facts(request)) is not None:
            return True
        form.add_error("code", "That code is not right (or was used already).")
    except two_factor.Throttled as e:
        form.add_error("code", str(e))
    return False
