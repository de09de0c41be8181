"""The check of escalation targets that the app's forms share with the manifest (governance.manifest.targets)."""

from __future__ import annotations

from django.utils import timezone

from governance.manifest.targets import target_checker
from governance.models import Invitation
from governance.services.members import membership_set_active
from tests.factories import MembershipFactory


def test_the_stored_organization_decides_which_targets_exist(tenant):
    problem = target_checker(tenant.org, plain=("owner", "team_lead"))
    assert problem("owner") == problem("role:executive") == ""
    assert problem(f"team:{tenant.team.key}") == problem(f"user:{tenant.member.user.email.upper()}") == ""
    assert problem(f"user:{tenant.invitation.email}") == ""  # the invited may be named before they accept
    assert problem("team:nowhere") == 'unknown team "nowhere"'
    assert problem("user:ghost@example.test") == 'unknown member "ghost@example.test"'
    assert problem("role:boss").startswith('unknown role "boss"; use ')
    assert (
        problem("everyone") == '"everyone" is not one of owner, team_lead, "role:<role>", "team:<key>", "user:<email>"'
    )


def test_a_deactivated_member_or_an_expired_invitation_is_no_target(tenant):
    leaver = MembershipFactory(organization=tenant.org)
    membership_set_active(membership=leaver, actor=tenant.admin.user, active=False)
    Invitation.objects.filter(pk=tenant.invitation.pk).update(expires_at=timezone.now())
    problem = target_checker(tenant.org)
    assert problem(f"user:{leaver.user.email}") == f"{leaver.user.email} is a deactivated member"
    assert problem(f"user:{tenant.invitation.email}") == f'unknown member "{tenant.invitation.email}"'
    assert problem("owner").startswith('"owner" is not one of "role:<role>"')
