from __future__ import annotations

import re

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from escalations.collaboration import attachments, comments, sharing
from escalations.collaboration.forms import AttachmentForm, CommentForm, PasscodeForm, ShareLinkForm
from escalations.collaboration.markdown import render as render_markdown
from escalations.collaboration.models import Attachment, Comment, ShareLink, ShareLinkView
from escalations.collaboration.selectors import (
    attachments_on,
    comments_on,
    mention_candidates,
    scorecard_rows,
    status_counts,
)
from escalations.collaboration.targets import TARGETS, get_target_or_404
from governance.access import get_for_org_or_404, role_required
from governance.models import Role
from governance.security import client_ip, within_limit
from scorecards.models import Scorecard

MENTION_PREFIX = re.compile(r"(?:^|\s)@([\w.+@-]*)$")


def _visible_parent(request: HttpRequest, row) -> tuple:
    """A comment's or attachment's target, if the member may see it: else 404, as for the target itself."""
    target = next(t for t in TARGETS.values() if t.content_type().pk == row.target_type_id)
    return get_target_or_404(request, target.name, row.target_id)


def _thread(request: HttpRequest, target, obj, form: CommentForm | None = None, status: int = 200) -> HttpResponse:
    """The comments partial of collaboration/_thread.html; the target's page loads it in place (a lower app's page
    names our URL, never our code)."""
    membership, now = request.membership, timezone.now()
    items = [
        {
            "comment": c,
            "html": render_markdown(c.body) if c.deleted_at is None else "",
            "may_edit": comments.may_edit(c, membership, now),
            "may_delete": comments.may_delete(c, membership),
        }
        for c in comments_on(obj)
    ]
    context = {
        "target": target.name,
        "obj": obj,
        "items": items,
        "form": form or CommentForm(auto_id=f"c-{target.name}-{obj.pk}-%s"),
        "edit_minutes": int(settings.COMMENT_EDIT_WINDOW.total_seconds() // 60),
    }
    if request.htmx:
        return render(request, "collaboration/_thread.html#comments", context, status=status)
    context.update(heading="Comments", about=target.describe(obj), back=target.page(obj))
    return render(request, "collaboration/thread.html", context, status=status)


def _files(request: HttpRequest, target, obj) -> HttpResponse:
    files = [{"file": a, "may_delete": attachments.may_delete(a, request.membership)} for a in attachments_on(obj)]
    context = {
        "target": target.name,
        "obj": obj,
        "files": files,
        "form": AttachmentForm(auto_id=f"a-{target.name}-{obj.pk}-%s"),
        "max_mb": settings.ATTACHMENT_MAX_BYTES // (1024 * 1024),
    }
    if request.htmx:
        return render(request, "collaboration/_thread.html#attachments", context)
    context.update(heading="Attachments", about=target.describe(obj), back=target.page(obj))
    return render(request, "collaboration/thread.html", context)


@require_http_methods(["GET", "POST"])
def comment_list(request: HttpRequest, target: str, object_id: int) -> HttpResponse:
    kind, obj = get_target_or_404(request, target, object_id)
    if request.method == "GET":
        return _thread(request, kind, obj)
    form = CommentForm(request.POST)
    if form.is_valid():
        try:
            comments.comment_create(author=request.membership, target=obj, body=form.cleaned_data["body"])
        except ValidationError as exc:
            form.add_error("body", exc)
    if form.errors:
        if request.htmx:
            return _thread(request, kind, obj, form=form, status=422)
        messages.error(request, " ".join(e for errs in form.errors.values() for e in errs))
    elif request.htmx:
        return _thread(request, kind, obj)
    return redirect(f"{kind.page(obj)}#comments")


@require_http_methods(["GET", "POST"])
def comment_edit(request: HttpRequest, comment_id: int) -> HttpResponse:
    comment = get_for_org_or_404(request, Comment.objects.select_related("author__user"), comment_id)
    kind, obj = _visible_parent(request, comment)
    if not comments.may_edit(comment, request.membership):
        minutes = int(settings.COMMENT_EDIT_WINDOW.total_seconds() // 60)
        raise PermissionDenied(f"Only its author may edit a comment, within {minutes} minutes of writing it.")
    form = CommentForm(request.POST or None, initial={"body": comment.body})
    if request.method == "POST" and form.is_valid():
        try:
            comments.comment_edit(comment=comment, by=request.membership, body=form.cleaned_data["body"])
        except (ValidationError, PermissionDenied) as exc:
            form.add_error("body", exc.messages if isinstance(exc, ValidationError) else str(exc))
        else:
            return _thread(request, kind, obj) if request.htmx else redirect(f"{kind.page(obj)}#comment-{comment.pk}")
    return render(
        request, "collaboration/comment_edit.html", {"comment": comment, "form": form, "back": kind.page(obj)}
    )


@require_POST
def comment_delete(request: HttpRequest, comment_id: int) -> HttpResponse:
    comment = get_for_org_or_404(request, Comment, comment_id)
    kind, obj = _visible_parent(request, comment)
    comments.comment_delete(comment=comment, by=request.membership)
    return _thread(request, kind, obj) if request.htmx else redirect(f"{kind.page(obj)}#comment-{comment.pk}")


@require_GET
def mention_suggestions(request: HttpRequest) -> HttpResponse:
    """Members of this organization whose email or name starts the "@..." being typed at the end of the text."""
    match = MENTION_PREFIX.search(request.GET.get("body", ""))
    members = mention_candidates(org=request.org, prefix=match.group(1)) if match else []
    if request.htmx:
        return render(request, "collaboration/_thread.html#mentions", {"members": members})
    context = {"members": members, "heading": "Members to mention", "about": "this organization", "back": "../"}
    return render(request, "collaboration/thread.html", context)


@require_http_methods(["GET", "POST"])
def attachment_list(request: HttpRequest, target: str, object_id: int) -> HttpResponse:
    kind, obj = get_target_or_404(request, target, object_id)
    if request.method == "GET":
        return _files(request, kind, obj)
    form = AttachmentForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Choose a file to attach.")
    else:
        try:
            added = attachments.attachment_add(by=request.membership, target=obj, upload=form.cleaned_data["file"])
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"Attached {added.name}.")
    return redirect(f"{kind.page(obj)}#attachments")


@require_GET
def attachment_download(request: HttpRequest, attachment_id: int) -> HttpResponse:
    """Streams the file through the app, to members who may see its parent: the storage is never public."""
    attachment = get_for_org_or_404(request, Attachment.objects.filter(deleted_at=None), attachment_id)
    _visible_parent(request, attachment)
    try:
        handle = attachment.file.open("rb")
    except FileNotFoundError:
        raise Http404("The file is no longer stored.") from None
    response = FileResponse(handle, as_attachment=True, filename=attachment.name, content_type=attachment.content_type)
    response["Cache-Control"] = "private, no-store"
    return response


@require_POST
def attachment_delete(request: HttpRequest, attachment_id: int) -> HttpResponse:
    attachment = get_for_org_or_404(request, Attachment.objects.filter(deleted_at=None), attachment_id)
    kind, obj = _visible_parent(request, attachment)
    attachments.attachment_delete(attachment=attachment, by=request.membership)
    messages.success(request, f"Deleted {attachment.name}.")
    return redirect(f"{kind.page(obj)}#attachments")


@require_GET
def decision_detail(request: HttpRequest, decision_id: int) -> HttpResponse:
    _, decision = get_target_or_404(request, "decision", decision_id)
    return render(request, "collaboration/decision.html", {"decision": decision})


@role_required(Role.EXECUTIVE, Role.ADMIN)
@require_http_methods(["GET", "POST"])
def share_link_list(request: HttpRequest) -> HttpResponse:
    form = ShareLinkForm(request.POST or None, org=request.org)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            link, token = sharing.share_link_create(
                by=request.membership,
                scorecard=form.cleaned_data["scorecard"],
                label=form.cleaned_data["label"],
                valid_for=form.valid_for,
                passcode=form.cleaned_data["passcode"],
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            created = {"link": link, "url": request.build_absolute_uri(reverse("share", args=[token]))}
            form = ShareLinkForm(org=request.org)
    links = (
        ShareLink.objects.for_org(request.org)
        .select_related("scorecard", "created_by")
        .annotate(view_count=Count("views", filter=Q(views__outcome=ShareLinkView.Outcome.SHOWN)))
    )
    context = {"form": form, "links": links, "created": created, "now": timezone.now()}
    return render(request, "collaboration/share_links.html", context)


@role_required(Role.EXECUTIVE, Role.ADMIN)
@require_POST
def share_link_revoke(request: HttpRequest, link_id: int) -> HttpResponse:
    link = get_for_org_or_404(request, ShareLink, link_id)
    sharing.share_link_revoke(link=link, by=request.membership)
    messages.success(request, f"Revoked “{link.label}”: the link no longer opens.")
    return redirect("collaboration:share_link_list", request.org.slug)


def _scorecard_context(org, card: Scorecard) -> dict:
    rows = scorecard_rows(org=org, scorecard=card, viewer=None)
    return {"org": org, "card": card, "rows": rows, "counts": status_counts(rows)}


@require_http_methods(["GET", "POST"])
def share(request: HttpRequest, token: str, tv: bool = False) -> HttpResponse:
    """The shared scorecard for someone without an account: status, values and charts, nothing to act on."""
    session_key = f"share:{sharing.hash_token(token)[:16]}"
    form = PasscodeForm(request.POST or None)
    passcode = form.cleaned_data["passcode"] if request.method == "POST" and form.is_valid() else None
    # Guessing a passcode: a few tries per link and address per window (the password reset's), then a pause.
    if passcode is not None and not within_limit(f"share-passcode:{session_key}:{client_ip(request)}", 10):
        context = {"form": PasscodeForm(), "error": "Too many tries. Wait an hour, or ask for the passcode again."}
        return render(request, "collaboration/share_passcode.html", context, status=429)
    try:
        opening = sharing.share_link_open(
            token=token,
            passcode=passcode,
            unlocked=request.session.get(session_key, False),
            ip=client_ip(request) or "",
            user=request.user,
        )
    except ValidationError as exc:
        return render(request, "collaboration/share_refused.html", {"message": exc.messages[0]}, status=404)
    except sharing.Refused as refused:
        if refused.outcome == "wrong_passcode":
            context = {"form": PasscodeForm(), "error": refused.message}
            return render(request, "collaboration/share_passcode.html", context, status=403)
        return render(request, "collaboration/share_refused.html", {"message": refused.message}, status=410)
    if opening.needs_passcode:
        return render(request, "collaboration/share_passcode.html", {"form": form})
    if opening.unlocked_now:
        request.session[session_key] = True
        return redirect(request.path)
    link = opening.link
    context = {**_scorecard_context(link.organization, link.scorecard), "link": link}
    context["refresh_seconds"] = settings.TV_ROTATE_SECONDS
    template = "collaboration/tv.html" if tv else "collaboration/shared_scorecard.html"
    response = render(request, template, context)
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"  # the token is in the path
    return response


@require_GET
def tv(request: HttpRequest) -> HttpResponse:
    """The office screen: the organization's scorecards one after another, each page refreshing to the next."""
    cards = list(Scorecard.objects.for_org(request.org).filter(archived_at=None, viewers=[]))
    if not cards:
        return render(request, "collaboration/tv.html", {"org": request.org, "rows": [], "card": None})
    index = int(request.GET["i"]) % len(cards) if request.GET.get("i", "").isdigit() else 0
    context = _scorecard_context(request.org, cards[index])
    context["next_url"] = f"{request.path}?i={(index + 1) % len(cards)}"
    context["refresh_seconds"] = settings.TV_ROTATE_SECONDS
    return render(request, "collaboration/tv.html", context)
