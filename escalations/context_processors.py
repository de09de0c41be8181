from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from escalations.workstreams import selectors


def inbox(request):
    """The navigation's counts (open tasks, unread notifications): one query, and only on pages that show them."""
    membership = getattr(request, "membership", None)
    if membership is None:
        return {}
    return {"nav_counts": SimpleLazyObject(lambda: selectors.inbox_counts(membership=membership))}
