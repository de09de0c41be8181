"""What one apply shares: the organization, the document, the key sets; the planned changes and the result."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db.models import Model

from governance.models import Invitation, Membership, Organization, User
from governance.services.audit import audit_log

if TYPE_CHECKING:
    from governance.manifest.sections import Section


class ManifestError(list):
    """Every problem of a manifest as (path, message) pairs, e.g. ("kpis[3].owner", 'unknown member "x@y"')."""

    def add(self, path: str, message: str) -> None:
        # A field several data source kinds share (url, at, value) is checked by each of them: reported once.
        if (path, message) not in self[-8:]:
            self.append((path, message))

    def lines(self) -> list[str]:
        return [f"{path}: {message}" for path, message in self]

    def as_list(self) -> list[dict]:
        """The API's shape: [{"path": ..., "message": ...}]."""
        return [{"path": path, "message": message} for path, message in self]


@dataclass
class Change:
    """One object to create, update, archive or delete, with the fields that differ (before, after)."""

    action: str  # create | update | archive | delete | skip
    kind: str  # how the diff names the object: "kpi", "team", ...
    key: str
    fields: list[tuple[str, Any, Any]] = field(default_factory=list)
    note: str = ""
    data: dict | None = field(default=None, repr=False)  # the document's canonical form of the object
    obj: Any = field(default=None, repr=False)  # the stored object, for updates and archives
    section: Section | None = field(default=None, repr=False, compare=False)

    @property
    def changed(self) -> list[str]:
        return [name for name, _before, _after in self.fields]

    def as_dict(self) -> dict:
        """Plain JSON, for the API's dry run."""
        fields = [{"field": name, "before": before, "after": after} for name, before, after in self.fields]
        return {"action": self.action, "kind": self.kind, "key": self.key, "fields": fields, "note": self.note}


@dataclass
class Result:
    changes: list[Change] = field(default_factory=list)
    errors: ManifestError = field(default_factory=ManifestError)
    skipped: list[Change] = field(default_factory=list)  # teams and members a prune leaves alone
    checksum: str = ""
    organization: Organization | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class Context:
    """What every section shares during one apply: the organization, the document and the key sets."""

    org: Organization | None
    doc: dict
    actor: User | None = None
    admin: User | None = None  # first admin when the manifest creates the organization
    decider: User | None = None  # recorded as deciding an ownership change: the actor, or an org token's creator
    prune: bool = False
    checksum: str = ""
    errors: ManifestError = field(default_factory=ManifestError)
    # Keys a reference may name, per document list ("teams", "kpis", ...): declared or live in the database.
    keys: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    active_members: set[str] = field(default_factory=set)  # may own, lead and be assigned
    inactive_members: set[str] = field(default_factory=set)
    invited: set[str] = field(default_factory=set)  # pending invitations and emails the document adds
    parsed: dict[str, dict[str, dict]] = field(default_factory=dict)  # list name -> key -> canonical form
    objects: dict[tuple[type, str], Any] = field(default_factory=dict, repr=False)  # looked up or created

    @property
    def reason(self) -> str:
        return f"organization manifest sha256:{self.checksum}"

    @property
    def members(self) -> set[str]:
        """Everyone a target or viewer may name: active members and the invited."""
        return self.active_members | self.invited

    def get(self, model: type[Model], key: str) -> Any:
        """A stored object of this organization by key (including the ones this apply created)."""
        if (model, key) not in self.objects:
            self.objects[model, key] = model.objects.get(organization=self.org, key=key)
        return self.objects[model, key]

    def remember(self, obj: Model) -> None:
        self.objects[type(obj), obj.key] = obj

    def membership(self, email: str) -> Membership:
        if (Membership, email) not in self.objects:
            self.objects[Membership, email] = Membership.objects.select_related("user").get(
                organization=self.org, user__email__iexact=email
            )
        return self.objects[Membership, email]

    def load_people(self) -> None:
        """Who the stored organization lets a document name: active and deactivated members, pending invitations."""
        for email, active in Membership.objects.for_org(self.org).values_list("user__email", "is_active"):
            (self.active_members if active else self.inactive_members).add(email.lower())
        pending = Invitation.objects.for_org(self.org).filter(accepted_at=None, revoked_at=None)
        self.invited = {i.email.lower() for i in pending if i.state == "pending"}

    def audit(
        self,
        verb: str,
        obj: Model,
        change: Change | None = None,
        *,
        before: dict | None = None,
        after: dict | None = None,
    ) -> None:
        """The audit event of a write made here because no service of the object's app covers it."""
        if change is not None and change.action == "update":
            before = {name: value for name, value, _ in change.fields}
            after = {name: value for name, _, value in change.fields}
        elif change is not None and change.action == "create":
            after = change.data
        audit_log(org=self.org, actor=self.actor, verb=verb, obj=obj, before=before, after=after)
