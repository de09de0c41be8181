"""Formats of kinds with a layout of their own: the weekly digest's and the daily digest's emails, rendered by the
email channel from the payload stored when the digest was written (escalations.reporting.digest_content,
escalations.notify.daily_digest). Here, in notify, because sending
sits below the reports it sends: reporting hands notify a message and its payload, and never the other way round."""

from __future__ import annotations

import re

from django.conf import settings
from django.template.loader import render_to_string

from escalations.models import Notification
from escalations.notify.kinds import DAILY_DIGEST
from scorecards.models import Status

DIGEST_KIND = "weekly_digest"  # NotificationPreference.kind; listed in notify.kinds.NOTIFICATION_KINDS
# The kinds with an email layout of their own, and its templates (text, HTML) under escalations/email/.
LAYOUTS = {DIGEST_KIND: "digest_email", DAILY_DIGEST: "daily_digest"}

# Status colours of static/css/app.css.
COLORS = {
    Status.ON_TRACK: "#1f8a5b",
    Status.AT_RISK: "#b7791f",
    Status.OFF_TRACK: "#c0392b",
    Status.STALE: "#7b8794",
    Status.NO_DATA: "#a0aab4",
}
_FONT = "font-family:'Segoe UI',Helvetica,Arial,sans-serif"
# Mail clients ignore stylesheets and templates keep no style attributes (the CSP check in tests/test_platform.py
# reads every template): the email's template names classes, and render_email writes these styles inline.
EMAIL_STYLES = {
    "body": f"margin:0;padding:0;background:#f3f5f8;color:#16202c;{_FONT};font-size:15px;line-height:1.5",
    "backdrop": "background:#f3f5f8",
    "backdrop-cell": "padding:24px 12px",
    "card": "max-width:620px;background:#ffffff;border:1px solid #e1e6ec;border-radius:10px",
    "head": "background:#1f3a5f;color:#ffffff;padding:20px 24px;border-radius:10px 10px 0 0",
    "head-org": "font-size:13px;color:#c9d6e8",
    "head-title": "font-size:22px;font-weight:700",
    "head-week": "font-size:14px;color:#e8eef6",
    "intro": "padding:20px 24px 4px",
    "section": "padding:8px 24px 4px",
    "p": "margin:0 0 10px",
    "item": "margin:0 0 8px",
    "h2": "font-size:17px;margin:10px 0 8px",
    "h2-ruled": "padding-top:16px;border-top:1px solid #e1e6ec",
    "h3": "font-size:14px;margin:12px 0 6px;color:#4b5867",
    "counts": "border-collapse:collapse;font-size:14px",
    "th": "padding:6px 0;border-bottom:1px solid #e1e6ec;color:#4b5867;font-weight:600",
    "td": "padding:6px 0;border-bottom:1px solid #eef1f4",
    "dot": "display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:8px",
    "strong": "font-weight:700",
    "muted": "color:#4b5867",
    "faint": "color:#7b8794",
    "small": "font-size:14px",
    "overdue": "color:#c0392b;font-weight:600",
    "link": "color:#2f6fd6;text-decoration:none;font-weight:600",
    "link-dark": "color:#16202c;text-decoration:none;font-weight:600",
    "callout": "margin:0 0 8px;padding:8px 10px;background:#fdf3e1;border-left:3px solid #b7791f;border-radius:4px",
    "buttons": "margin:14px 0 6px",
    "button": "display:inline-block;background:#2f6fd6;color:#ffffff;padding:9px 16px;border-radius:7px;"
    "text-decoration:none;font-weight:600",
    "foot": "padding:20px 24px 24px;font-size:12px;color:#7b8794",
    "foot-link": "color:#7b8794",
    **{f"dot-{status}": f"background:{color}" for status, color in COLORS.items()},
    **{f"st-{status}": f"color:{color}" for status, color in COLORS.items()},
}
_CLASSES = re.compile(r'\sclass="([^"]*)"')


def _inline_styles(html: str) -> str:
    def styles(match: re.Match) -> str:
        style = ";".join(EMAIL_STYLES[name] for name in match.group(1).split() if name in EMAIL_STYLES)
        return f' style="{style}"' if style else ""

    return _CLASSES.sub(styles, html)


def render_email(notification: Notification) -> tuple[str, str]:
    """The text and HTML parts of an email with a layout (LAYOUTS), from the payload stored when it was written."""
    template = f"escalations/email/{LAYOUTS[notification.kind]}"
    context = {
        "d": notification.payload,
        "site": settings.SITE_URL,
        "subject": notification.email_subject,
    }
    return (
        render_to_string(f"{template}.txt", context),
        _inline_styles(render_to_string(f"{template}.html", context)),
    )
