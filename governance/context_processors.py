from __future__ import annotations

from django.conf import settings

from governance.models import Membership


def tenancy(request):
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {
        "org": getattr(request, "org", None),
        "membership": getattr(request, "membership", None),
        # The organization switcher lists every active membership; nothing is stored on the user.
        "my_memberships": Membership.objects.filter(user=request.user, is_active=True)
        .select_related("organization")
        .order_by("organization__name"),
        "debug": settings.DEBUG,
    }
