"""The `data_sources` list.

Defaults when a field is omitted (the export leaves out the fields equal to them): headers_secret {},
headers_env {}, task_after 3, paused false, pulls []; a pull's items absent (the JSON answer itself is the list).

Decisions where MANIFEST.md is silent: a data source of kind sql names its database's SQLAlchemy URL: an
organization secret (`dsn_secret`) or, only when the operator granted the variable to the organization
(PULL_ENV_GRANTS), an environment variable (`dsn_env`); exactly one of them, and no url. http_json names a `url`
without credentials and optional headers, each from a secret (`headers_secret` {header: secret}) or a granted
variable (`headers_env` {header: variable}). spreadsheet names a published CSV/TSV `url`, checked as http_json's
(a field several kinds share reports its problem once). A secret need not be set yet when the manifest is
applied: the source's runs say which one to set. Pulls of sql sources are {kpi, query}; of http_json sources
{kpi, items (optional dotted path), at, value}; of spreadsheet sources {kpi, at, value, kpi_column (optional)},
the names of columns. A field of another kind is an error. Everything but kind and every is kept in
DataSource.config; a created or changed source is pulled at the next sweep (its backoff forgotten).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone

from governance.manifest.context import Context
from governance.manifest.fields import Entry
from governance.manifest.sections import KeyedSection
from governance.models import Organization
from scorecards.connectors.base import Connector
from scorecards.connectors.names import Names
from scorecards.connectors.registry import CONNECTORS, config_fields, connector_kind, pull_fields
from scorecards.manifest.values import duration_form, duration_value
from scorecards.models import DataSource

TASK_AFTER = DataSource._meta.get_field("task_after").default


class DataSourcesSection(KeyedSection):
    """Each kind's fields, checks and pulls come from its connector (scorecards.connectors.registry)."""

    field, kind, model = "data_sources", "data_source", DataSource
    credential_fields = tuple(config_fields())
    entry_fields = ("key", "kind", *credential_fields, "every", "task_after", "paused", "pulls")
    required = ("key", "kind", "every")

    def normalize(self, entry: Entry, ctx: Context) -> dict:
        kind = entry.text("kind", choices=list(CONNECTORS))
        known = connector_kind(kind) if kind else None
        slug = ctx.org.slug if ctx.org else str((ctx.doc.get("organization") or {}).get("slug"))
        names = Names(entry, slug)
        data = {"key": entry.key(), "kind": kind}
        for connector in CONNECTORS.values():
            data.update(connector.read_config(entry, names))
        data["every"] = entry.duration("every", positive=True)
        data["task_after"] = entry.integer("task_after", default=TASK_AFTER, low=1, high=100)
        data["paused"] = entry.boolean("paused")
        if known:
            # What each kind reads; a field of another kind is an error at its path.
            for name in known.required:
                if not entry.has(name):
                    entry.error(name, f"is required for kind {kind}")
            for name in self.credential_fields:
                if name not in known.fields and entry.has(name):
                    entry.error(name, f"is not used by kind {kind}")
            known.check_config(entry, data)
        data["pulls"] = self._pulls(entry, ctx, known)
        return data

    def _pulls(self, entry: Entry, ctx: Context, kind: type[Connector] | None) -> list[dict]:
        every_field = pull_fields()
        pulls: list[dict] = []
        seen: dict[str, str] = {}
        for i, item in enumerate(entry.items("pulls")):
            pull = Entry(
                item,
                entry.at(f"pulls[{i}]"),
                ctx.errors,
                fields=every_field,
                required=kind.pull_required if kind else ("kpi",),
                parent=entry,
            )
            if kind:
                for name in every_field:
                    if name not in kind.pull_fields and pull.has(name):
                        pull.error(name, f"is not used by kind {kind.kind}")
            kpi = pull.ref("kpi", ctx, "kpis")
            if kpi in seen:
                pull.error("kpi", f'"{kpi}" is pulled twice (also {seen[kpi]})')
            seen.setdefault(kpi, pull.path)
            values = {"kpi": kpi}
            for connector in CONNECTORS.values():
                values.update(connector.read_pull(pull))
            pulls.append(self._pull_form(kind, values))
        return pulls

    def _pull_form(self, kind: type[Connector] | None, values: dict) -> dict:
        """A pull as the document writes it: its kind's fields, an absent optional one left out."""
        if kind is None:  # an unknown kind, already reported: what the pull gives
            return {name: value for name, value in values.items() if name == "kpi" or value is not None}
        return {
            name: values.get(name)
            for name in kind.pull_fields
            if name in kind.pull_required or values.get(name) is not None
        }

    def stored(self, org: Organization) -> Iterable[DataSource]:
        return DataSource.objects.for_org(org)

    def canonical(self, source: DataSource) -> dict:
        config = source.config or {}
        return {
            "key": source.key,
            "kind": source.kind,
            **{name: _copy(config.get(name) or default) for name, default in config_fields().items()},
            "every": duration_form(source.every),
            "task_after": source.task_after,
            "paused": source.paused_at is not None,
            "pulls": [self._pull_form(connector_kind(source.kind), pull) for pull in config.get("pulls", [])],
        }

    def defaults(self, data: dict) -> dict:
        return {
            **{name: _copy(default) for name, default in config_fields().items()},
            "task_after": TASK_AFTER,
            "paused": False,
            "pulls": [],
        }

    def assign(self, obj: DataSource, data: dict, ctx: Context) -> None:
        obj.key, obj.kind, obj.every = data["key"], data["kind"], duration_value(data["every"])
        obj.task_after = data["task_after"]
        obj.paused_at = (obj.paused_at or timezone.now()) if data["paused"] else None
        obj.config = {name: data[name] for name in (*self.credential_fields, "pulls") if data[name]}
        # A new or changed source is pulled at the next sweep, without the backoff of its old settings.
        obj.next_run_at, obj.failures = None, 0


def _copy(value: object) -> object:
    """A fresh mapping for a mapping field, so that no two documents share one."""
    return dict(value) if isinstance(value, dict) else value
