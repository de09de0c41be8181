"""Data sources changed on their pages: checked by the manifest's own section (one validator), saved through its
assign, and audited; the manifest export reads the stored rows, so every change made here is exported."""

from __future__ import annotations

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance.manifest.context import Context
from governance.manifest.document import dump_yaml
from governance.models import Organization, User
from governance.services.audit import audit_log
from scorecards.manifest.data_sources import DataSourcesSection
from scorecards.models import DataSource, Kpi

FORM_FIELDS = ("key", "kind", "every", "task_after")  # the form's own inputs; the rest is the settings text
PREFIX = "data_sources[0]"


def settings_text(source: DataSource) -> str:
    """The source's kind-specific fields and pulls as the manifest writes them, for the settings box."""
    section = DataSourcesSection()
    data = section.canonical(source)
    shown = {name: value for name, value in data.items() if name not in (*FORM_FIELDS, "paused")}
    defaults = section.defaults(data)
    return dump_yaml({name: value for name, value in shown.items() if value != defaults.get(name) or name == "pulls"})


def data_source_check(*, org: Organization, fields: dict, settings: str) -> tuple[dict | None, list[str]]:
    """The manifest entry the form describes, checked as the manifest checks it: (its data, []) or (None, the
    problems, each with the field it is about)."""
    try:
        extra = yaml.safe_load(settings or "") or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        return None, [f"settings: is not YAML{where}: {getattr(e, 'problem', None) or 'unreadable'}"]
    if not isinstance(extra, dict):
        return None, ["settings: must be fields like url: … and pulls: …, one per line"]
    clash = sorted(set(extra) & {*FORM_FIELDS, "paused"})
    if clash:
        return None, [f"settings: {clash[0]} has its own field above"]
    raw = {**extra, **{name: value for name, value in fields.items() if value not in (None, "")}}
    ctx = Context(org=org, doc={"data_sources": [raw]})
    ctx.keys["kpis"] = set(Kpi.objects.for_org(org).filter(archived_at=None).values_list("key", flat=True))
    section = DataSourcesSection()
    section.validate(ctx.doc, ctx)
    if ctx.errors:
        return None, [f"{path.removeprefix(PREFIX).lstrip('.') or 'source'}: {message}" for path, message in ctx.errors]
    return next(iter(ctx.parsed[section.field].values())), []


def data_source_unsaved(*, org: Organization, data: dict) -> DataSource:
    """The source checked data describes, not saved: what the form's Test button pulls."""
    source = DataSource(organization=org)
    DataSourcesSection().assign(source, data, Context(org=org, doc={}))
    return source


@transaction.atomic
def data_source_save(*, org: Organization, actor: User, data: dict, source: DataSource | None = None) -> DataSource:
    """Creates or changes a source from checked data (data_source_check); a changed source is pulled at the
    next sweep."""
    section = DataSourcesSection()
    taken = DataSource.objects.for_org(org).filter(key=data["key"])
    if source is not None:
        taken = taken.exclude(pk=source.pk)
    if taken.exists():
        raise ValidationError(
            f'A data source "{data["key"]}" exists already (perhaps deleted: the manifest restores it).'
        )
    before = section.canonical(source) if source is not None else None
    obj = source or DataSource(organization=org)
    data = {**data, "paused": obj.paused_at is not None}  # pausing has its own button
    section.assign(obj, data, Context(org=org, doc={}, actor=actor))
    obj.full_clean()
    obj.save()
    verb = "data_source.updated" if before else "data_source.created"
    audit_log(org=org, actor=actor, verb=verb, obj=obj, before=before, after=section.canonical(obj))
    return obj


@transaction.atomic
def data_source_pause(*, source: DataSource, actor: User, paused: bool) -> DataSource:
    if (source.paused_at is not None) == paused:
        return source
    source.paused_at = timezone.now() if paused else None
    # Resumed, it runs at the next sweep.
    source.next_run_at = None if not paused else source.next_run_at
    source.save(update_fields=["paused_at", "next_run_at"])
    verb = "data_source.paused" if paused else "data_source.resumed"
    audit_log(org=source.organization, actor=actor, verb=verb, obj=source, after={"paused": paused})
    return source


@transaction.atomic
def data_source_delete(*, source: DataSource, actor: User) -> None:
    """Archives the source: its runs and measurements stay; a manifest that names it again restores it."""
    source.archived_at = timezone.now()
    source.save(update_fields=["archived_at"])
    audit_log(org=source.organization, actor=actor, verb="data_source.archived", obj=source, after={})
