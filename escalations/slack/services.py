"""Connecting a Slack workspace, linking members to their Slack identities, and unlinking; every change audited."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from slack_sdk.errors import SlackApiError

from escalations.models import SlackActionReceipt, SlackInstallation, SlackLink
from escalations.slack.client import BOT_TOKEN, SIGNING_SECRET, bot, call, client
from governance.models import Membership, Organization, Secret, User
from governance.services.audit import audit_log
from governance.services.secrets import secret_delete, secret_set

SCOPES = ["chat:write", "im:write", "users:read", "users:read.email", "commands"]
LINK_CODE_SALT = "steerco.slack.link"
LINK_CODE_TTL = 30 * 60  # seconds: a code is typed into Slack right after it is shown


def installation_connect(*, org: Organization, actor: User, code: str, redirect_uri: str) -> SlackInstallation:
    """Exchanges the OAuth code for the bot token (oauth.v2.access), stores it as the organization's secret, and
    links every active member whose email Slack knows (users.lookupByEmail: Slack's verified addresses)."""
    try:
        granted = call(
            client(),
            "oauth_v2_access",
            client_id=settings.SLACK_CLIENT_ID,
            client_secret=settings.SLACK_CLIENT_SECRET,
            code=code,
            redirect_uri=redirect_uri,
        )
    except SlackApiError as e:
        raise ValidationError(f"Slack refused the installation: {e.response.get('error', 'unknown error')}.") from None
    team = granted["team"]
    try:
        with transaction.atomic():
            installation, created = SlackInstallation.objects.update_or_create(
                organization=org,
                defaults={
                    "team_id": team["id"],
                    "team_name": team.get("name", ""),
                    "bot_user_id": granted.get("bot_user_id", ""),
                    "installed_by": actor,
                },
            )
            secret_set(org=org, actor=actor, name=BOT_TOKEN, value=granted["access_token"])
    except IntegrityError:
        raise ValidationError(
            f"The Slack workspace {team.get('name') or team['id']} is connected to another Steerco organization; "
            "disconnect it there first."
        ) from None
    SlackLink.objects.filter(organization=org).exclude(team_id=team["id"]).delete()  # another workspace's ids
    audit_log(
        org=org,
        actor=actor,
        verb="slack.connected",
        obj=installation,
        after={"team": team["id"], "name": team.get("name", ""), "reinstalled": not created},
    )
    links_by_email(installation=installation, actor=actor)
    return installation


def links_by_email(*, installation: SlackInstallation, actor: User | None) -> int:
    """Links the active members not linked yet whose email is a Slack user's in the workspace. One users.list page
    per 200 Slack users (Slack's verified profile emails), not one lookup per member: lookups are rate limited to
    about 50 a minute, which a large organization would wait on for many minutes."""
    org = installation.organization
    unlinked = Membership.objects.filter(organization=org, is_active=True, slack_link=None).select_related("user")
    by_email = {m.user.email.lower(): m for m in unlinked}
    linked, cursor, api = 0, None, bot(org)
    while by_email:
        page = call(api, "users_list", limit=200, cursor=cursor)
        for user in page["members"]:
            email = (user.get("profile") or {}).get("email", "").lower()
            if email in by_email and not user.get("deleted") and not user.get("is_bot"):
                member = by_email.pop(email)
                linked += _link(member, installation.team_id, user["id"], SlackLink.How.EMAIL, actor) is not None
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            break
    return linked


def signing_secret_set(*, org: Organization, actor: User, value: str) -> None:
    secret_set(org=org, actor=actor, name=SIGNING_SECRET, value=value.strip())


@transaction.atomic
def installation_disconnect(*, org: Organization, actor: User) -> None:
    installation = SlackInstallation.objects.for_org(org).select_for_update().first()
    if installation is None:
        return
    SlackLink.objects.for_org(org).delete()
    for secret in Secret.objects.for_org(org).filter(name__in=[BOT_TOKEN, SIGNING_SECRET]):
        secret_delete(secret=secret, actor=actor)
    audit_log(org=org, actor=actor, verb="slack.disconnected", obj=installation, before={"team": installation.team_id})
    installation.delete()


def link_code(membership: Membership) -> str:
    """A code the member types as `/steerco link CODE`: it names their membership, expires, and works once."""
    return signing.dumps([membership.organization_id, membership.pk], salt=LINK_CODE_SALT, compress=True)


@transaction.atomic
def link_by_code(*, installation: SlackInstallation, user_id: str, code: str) -> Membership:
    try:
        org_id, membership_id = signing.loads(code.strip(), salt=LINK_CODE_SALT, max_age=LINK_CODE_TTL)
    except signing.SignatureExpired:
        raise ValidationError("This link code has expired: take a new one from your Slack page in Steerco.") from None
    except (signing.BadSignature, ValueError, TypeError):
        raise ValidationError("This is not a Steerco link code: copy it from your Slack page in Steerco.") from None
    if org_id != installation.organization_id:
        raise ValidationError("This link code is for another Steerco organization than this workspace's.")
    membership = Membership.objects.filter(organization_id=org_id, pk=membership_id, is_active=True).first()
    if membership is None:
        raise ValidationError("This link code's member is no longer active.")
    used = hashlib.sha256(f"link:{code.strip()}".encode()).hexdigest()
    try:
        with transaction.atomic():
            SlackActionReceipt.objects.create(organization_id=org_id, key=used)
    except IntegrityError:
        raise ValidationError("This link code was used already: take a new one from your Slack page.") from None
    SlackLink.objects.filter(organization_id=org_id, team_id=installation.team_id, user_id=user_id).delete()
    SlackLink.objects.filter(membership=membership).delete()
    _link(membership, installation.team_id, user_id, SlackLink.How.CODE, membership.user)
    return membership


def _link(membership: Membership, team_id: str, user_id: str, how: str, actor: User | None) -> SlackLink | None:
    """The link, or None when that Slack user is linked to someone else already."""
    try:
        with transaction.atomic():
            link = SlackLink.objects.create(
                organization_id=membership.organization_id,
                membership=membership,
                team_id=team_id,
                user_id=user_id,
                how=how,
            )
    except IntegrityError:
        return None
    audit_log(
        org=membership.organization,
        actor=actor,
        verb="slack.linked",
        obj=membership,
        after={"slack_user": user_id, "how": how},
    )
    return link


@transaction.atomic
def unlink(*, membership: Membership, actor: User) -> None:
    link = SlackLink.objects.filter(membership=membership).first()
    if link is None:
        return
    audit_log(
        org=membership.organization,
        actor=actor,
        verb="slack.unlinked",
        obj=membership,
        before={"slack_user": link.user_id},
    )
    link.delete()


def test_message(*, org: Organization, membership: Membership) -> None:
    """A DM to the admin who asked, proving that the token and the link work."""
    link = SlackLink.objects.filter(membership=membership).first()
    if link is None:
        raise ValidationError("Link your own Slack account first (My Slack account): the test goes to you.")
    api = bot(org)
    try:
        channel = call(api, "conversations_open", users=link.user_id)["channel"]["id"]
        call(api, "chat_postMessage", channel=channel, text=f"Steerco is connected to Slack for {org.name}.")
    except SlackApiError as e:
        raise ValidationError(f"Slack refused the test message: {e.response.get('error', 'unknown error')}.") from None
    audit_log(org=org, actor=membership.user, verb="slack.tested", after={"slack_user": link.user_id})
