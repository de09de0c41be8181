"""Validate, plan and apply a whole manifest at once, and export an organization as one (see the package's doc)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils.module_loading import import_string

from governance.manifest.context import Change, Context, ManifestError, Result
from governance.manifest.document import parse
from governance.manifest.fields import describe
from governance.manifest.sections import Section
from governance.models import Membership, Organization, Role, User, slug_validator
from governance.services.audit import audit_log

VERSION = 1
# The document's order: errors are listed and the export is written in it.
DOCUMENT_ORDER = (
    "version",
    "organization",
    "teams",
    "members",
    "escalation_policies",
    "kpis",
    "dependencies",
    "objectives",
    "scorecards",
    "data_sources",
)
# Layer order: what a section refers to by foreign key is applied before it. Imported lazily, so that this
# package imports no app to its right.
SECTIONS = (
    "governance.manifest.organization.OrganizationSection",
    "governance.manifest.teams.TeamsSection",
    "governance.manifest.members.MembersSection",
    "scorecards.manifest.data_sources.DataSourcesSection",
    "scorecards.manifest.kpis.KpisSection",
    "scorecards.manifest.objectives.ObjectivesSection",
    "scorecards.manifest.key_results.KeyResultsSection",
    "scorecards.manifest.scorecards.ScorecardsSection",
    "dependencies.manifest.DependenciesSection",
    "escalations.policies.manifest.EscalationPoliciesSection",
)


def sections() -> list[Section]:
    return [import_string(path)() for path in SECTIONS]


def _error_order(error: tuple[str, str]) -> tuple[int, int]:
    match = re.match(r"([a-z_]+)(?:\[(\d+)\])?", error[0])
    top, index = (match.group(1), match.group(2)) if match else ("", None)
    return (DOCUMENT_ORDER.index(top) if top in DOCUMENT_ORDER else -1, int(index) if index else -1)


def _check_document(doc: dict, errors: ManifestError, known: set[str]) -> str | None:
    """The top level, and the slug that names the organization (None when it cannot)."""
    for name in doc:
        if name not in known:
            errors.add(str(name), "unknown field")
    if doc.get("version") is None:
        errors.add("version", f"is required (this is version {VERSION})")
    elif doc["version"] != VERSION or isinstance(doc["version"], bool):
        errors.add("version", f"unsupported version {doc['version']!r}; this server reads version {VERSION}")
    organization = doc.get("organization")
    if organization is None:
        errors.add("organization", "is required")
        return None
    if not isinstance(organization, dict):
        errors.add("organization", f"must be a mapping, not {describe(organization)}")
        return None
    slug = organization.get("slug")
    if slug is None:
        errors.add("organization.slug", "is required")
        return None
    if not isinstance(slug, str):
        errors.add("organization.slug", f"must be a string, not {describe(slug)}")
        return None
    try:
        slug_validator(slug)
    except ValidationError as e:
        errors.add("organization.slug", f'"{slug}": {" ".join(e.messages)}')
        return None
    return slug


def apply_manifest(
    source: str | bytes | dict,
    *,
    actor: User | None = None,
    org: Organization | None = None,
    admin: User | None = None,
    dry_run: bool = False,
    prune: bool = False,
    decider: User | None = None,
    authorize: Callable[[list[Change]], None] | None = None,
) -> Result:
    """Validates the whole manifest and, when it has no error and this is no dry run, applies it at once.

    `actor` None means the CLI or an organization token. `org`, when given (an API token's organization), must
    be the one the manifest names. `admin` becomes the first admin when the manifest creates its organization
    (default: the actor). `decider` is recorded as deciding ownership changes (default: the actor).
    `authorize`, given the planned changes, may raise to refuse them (an API token's scopes). Nothing is
    written when there is any error, nor on a dry run.
    """
    errors = ManifestError()
    doc, checksum = parse(source, errors)
    result = Result(errors=errors, checksum=checksum)
    if doc is None:
        return result
    parts = sections()
    slug = _check_document(doc, errors, {"version", *(name for part in parts for name in part.fields)})
    if slug is None:
        errors.sort(key=_error_order)
        return result
    with transaction.atomic():
        stored = Organization.objects.filter(slug=slug)
        stored = stored.first() if dry_run else stored.select_for_update().first()
        ctx = Context(
            org=stored,
            doc=doc,
            actor=actor,
            admin=admin or actor,
            decider=decider or actor,
            prune=prune,
            checksum=checksum,
            errors=errors,
        )
        _check_access(ctx, slug, org)
        _load_people(ctx)
        for part in parts:
            part.collect(doc, ctx)
        for part in parts:
            part.validate(doc, ctx)
        if not errors:
            _plan_and_apply(parts, ctx, result, dry_run=dry_run, authorize=authorize)
        result.organization = ctx.org
        if errors or dry_run:
            transaction.set_rollback(True)
    errors.sort(key=_error_order)
    return result


def _plan_and_apply(
    parts: list[Section],
    ctx: Context,
    result: Result,
    *,
    dry_run: bool,
    authorize: Callable[[list[Change]], None] | None,
) -> None:
    plan = [(part, part.plan(ctx.doc, ctx)) for part in parts]
    result.changes = [c for _, changes in plan for c in changes if c.action != "skip"]
    result.skipped = [c for _, changes in plan for c in changes if c.action == "skip"]
    if authorize is not None:
        authorize(result.changes)
    if not dry_run and result.changes:
        _apply(plan, ctx, result)


def _check_access(ctx: Context, slug: str, org: Organization | None) -> None:
    if org is not None and org.slug != slug:
        ctx.errors.add("organization.slug", f'this manifest is for "{slug}", not for "{org.slug}"')
    elif ctx.org is None and ctx.admin is None:
        ctx.errors.add(
            "organization.slug",
            f'no organization "{slug}" exists; to create it, name its first admin (apply_manifest --admin EMAIL)',
        )
    if ctx.org is not None and ctx.actor is not None:
        is_admin = Membership.objects.filter(organization=ctx.org, user=ctx.actor, role=Role.ADMIN, is_active=True)
        if not is_admin.exists():
            ctx.errors.add("manifest", f"only an admin of {ctx.org} may apply its manifest")


def _load_people(ctx: Context) -> None:
    if ctx.org is None:
        ctx.active_members = {ctx.admin.email.lower()} if ctx.admin else set()
    else:
        ctx.load_people()
    members = ctx.doc.get("members")
    if isinstance(members, list):
        declared = {
            m["email"].strip().lower() for m in members if isinstance(m, dict) and isinstance(m.get("email"), str)
        }
        ctx.invited |= declared - ctx.active_members - ctx.inactive_members


def _apply(plan: list[tuple[Section, list[Change]]], ctx: Context, result: Result) -> None:
    try:
        with transaction.atomic():  # a savepoint: a failed write leaves the transaction usable for the rollback
            for part, changes in plan:
                part.apply(changes, ctx)
    except (ValidationError, PermissionDenied, IntegrityError, ObjectDoesNotExist) as e:
        # A rule a service enforces that validation did not foresee: the whole apply is undone.
        messages = e.messages if isinstance(e, ValidationError) else [str(e)]
        ctx.errors.extend(("manifest", f"could not apply: {message}") for message in messages)
        return
    counts: dict[str, int] = defaultdict(int)
    for change in result.changes:
        counts[f"{change.action}d"] += 1
    audit_log(
        org=ctx.org,
        actor=ctx.actor,
        verb="manifest.applied",
        obj=ctx.org,
        after={"sha256": ctx.checksum, "prune": ctx.prune, **counts},
    )


def export_manifest(org: Organization) -> dict:
    """The organization as a manifest, in MANIFEST.md's order; applying it changes nothing."""
    parts: dict[str, Any] = {"version": VERSION}
    for part in sections():
        parts.update(part.export(org))
    return {name: parts[name] for name in DOCUMENT_ORDER if name in parts}
