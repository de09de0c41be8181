"""django-oauth-toolkit's validator with the claims an enterprise provider sends (email, name, groups) and, for
three clients the tests name, the faults an attacker or a misconfigured provider would bring: an ID token whose
payload was altered after signing, one carrying another nonce, one from another issuer."""

import base64
import json

from oauth2_provider.oauth2_validators import OAuth2Validator

FOREIGN_ISSUER = "http://127.0.0.1:9/elsewhere"


def _client(request) -> str:
    return request.client.client_id if request.client else ""


class Validator(OAuth2Validator):
    oidc_claim_scope = None  # every claim below goes into the ID token, as a provider's groups claim does

    def get_additional_claims(self, request):
        user = request.user
        claims = {
            "email": user.email,
            "email_verified": True,
            "name": user.first_name,
            "groups": sorted(user.groups.values_list("name", flat=True)),
        }
        if _client(request) == "wrong-nonce":
            claims["nonce"] = "a-nonce-the-client-never-sent"
        return claims

    def get_oidc_issuer_endpoint(self, request):
        if _client(request) == "foreign-issuer":
            return FOREIGN_ISSUER
        return super().get_oidc_issuer_endpoint(request)

    def finalize_id_token(self, id_token, token, token_handler, request):
        signed = super().finalize_id_token(id_token, token, token_handler, request)
        if _client(request) != "tampered":
            return signed
        header, payload, signature = signed.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["groups"] = ["steerco-admins"]  # a member promoting themselves
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        return f"{header}.{forged}.{signature}"
