from __future__ import annotations

from django.conf import settings


def tenancy(request):
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {
        "org": getattr(request, "org", None),
        "membership": getattr(request, "membership", None),
        # The organization switcher lists every active membership (governance.middleware reads them once).
        "my_memberships": getattr(request, "memberships", ()),
        "debug": settings.DEBUG,
    }
