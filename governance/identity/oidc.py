"""OpenID Connect with each organization's own identity provider, on mozilla-django-oidc.

The library reads one provider from settings; here its backend and views take the organization's SingleSignOn
instead: endpoints from the issuer's discovery document, the client secret from the organization's secrets. Its
ID token check skips the audience and the issuer, so `_verify_jws` adds both (and requires exp, iat and sub);
nonce, state and PKCE are the library's. Claims come from the verified ID token only, never from the userinfo
endpoint, so that the groups that grant a role are signed by the provider.
"""

from __future__ import annotations

import jwt
import requests
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings

from governance.identity.models import SingleSignOn
from governance.models import User

SIGNING_ALGORITHMS = ["RS256", "ES256", "PS256", "RS384", "ES384", "RS512"]  # asymmetric only: keys from the JWKS
DISCOVERY_TTL = 3600
# What the library would read from settings, fixed for every organization.
LIBRARY_SETTINGS = {
    "OIDC_AUTHENTICATION_CALLBACK_URL": "identity:callback",
    "OIDC_RP_SCOPES": "openid email profile",
    "OIDC_USE_NONCE": True,
    "OIDC_USE_PKCE": True,
    "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256",
    "OIDC_ALLOW_UNSECURED_JWT": False,
    "OIDC_STORE_ACCESS_TOKEN": False,
    "OIDC_STORE_ID_TOKEN": False,
    "OIDC_TOKEN_USE_BASIC_AUTH": False,
    "OIDC_TIMEOUT": 10,
}


class ProviderError(Exception):
    """The identity provider could not be used (unreachable, a malformed discovery document, another issuer)."""


def library_setting(attr: str, *default):
    if attr in LIBRARY_SETTINGS:
        return LIBRARY_SETTINGS[attr]
    return import_from_settings(attr, *default)


def discovery(issuer: str) -> dict:
    """The issuer's discovery document (cached), checked to name this issuer and the endpoints the flow needs."""
    key = f"identity:oidc-discovery:{issuer}"
    document = cache.get(key)
    if document is None:
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = requests.get(url, timeout=LIBRARY_SETTINGS["OIDC_TIMEOUT"])
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as e:
            raise ProviderError(f"The discovery document at {url} could not be read ({e.__class__.__name__}).") from e
        if not isinstance(document, dict) or document.get("issuer") != issuer:
            raise ProviderError(f"The discovery document at {url} names another issuer than {issuer}.")
        missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not document.get(k)]
        if missing:
            raise ProviderError(f"The discovery document at {url} lacks {', '.join(missing)}.")
        cache.set(key, document, DISCOVERY_TTL)
    return document


def signing_algorithm(document: dict) -> str:
    offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    for algorithm in offered:
        if algorithm in SIGNING_ALGORITHMS:
            return algorithm
    raise ProviderError(
        f"The provider signs ID tokens with {', '.join(offered)}; Steerco accepts {SIGNING_ALGORITHMS}."
    )


class OrganizationOIDCBackend(OIDCAuthenticationBackend):
    """The library's code flow against one organization's provider; `sign_in` turns verified claims into a user
    (governance.identity.services.sso_sign_in, which checks the domain and syncs the membership)."""

    def __init__(self, *, sso: SingleSignOn, client_secret: str, sign_in) -> None:
        document = discovery(sso.issuer)
        self.sso = sso
        self.sign_in = sign_in
        self.OIDC_OP_TOKEN_ENDPOINT = document["token_endpoint"]
        self.OIDC_OP_USER_ENDPOINT = document.get("userinfo_endpoint", "")
        self.OIDC_OP_JWKS_ENDPOINT = document["jwks_uri"]
        self.OIDC_RP_CLIENT_ID = sso.client_id
        self.OIDC_RP_CLIENT_SECRET = client_secret
        self.OIDC_RP_SIGN_ALGO = signing_algorithm(document)
        self.OIDC_RP_IDP_SIGN_KEY = None
        self.UserModel = User
        self.refusal = ""

    def get_settings(self, attr, *args):
        return library_setting(attr, *args)

    def authenticate(self, request, **kwargs):
        """The user, or None with `refusal` saying why (a forged or foreign token, an uncovered domain)."""
        try:
            return super().authenticate(request, **kwargs)
        except SuspiciousOperation as e:
            self.refusal = str(e)
        except requests.RequestException as e:
            self.refusal = f"The identity provider could not be reached ({e.__class__.__name__})."
        return None

    def _verify_jws(self, payload, key):
        header = jwt.get_unverified_header(payload)
        if header.get("alg") != self.OIDC_RP_SIGN_ALGO:
            raise SuspiciousOperation(
                f"The ID token is signed with {header.get('alg')!r}, not {self.OIDC_RP_SIGN_ALGO}."
            )
        try:
            return jwt.decode(
                payload,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=self.sso.issuer,
                leeway=settings.SSO_CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.InvalidIssuerError:
            raise SuspiciousOperation(f"The ID token was issued by another issuer than {self.sso.issuer}.") from None
        except jwt.InvalidTokenError as e:
            raise SuspiciousOperation(f"The ID token failed verification: {e}.") from None

    def get_userinfo(self, access_token, id_token, payload):
        return payload

    def get_or_create_user(self, access_token, id_token, payload):
        try:
            return self.sign_in(sso=self.sso, claims=payload)
        except SuspiciousOperation as e:  # the library logs and swallows it; the view audits the reason
            self.refusal = str(e)
            raise
