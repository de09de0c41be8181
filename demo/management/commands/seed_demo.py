"""The demo sits above every app because it fills them all: governance, scorecards, dependencies, escalations."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import transaction

from demo.data_sources import seed_data_sources
from demo.formulas import seed_formulas
from demo.reviews import seed_reviews
from demo.scorecards import seed_scorecards
from demo.workstreams import seed_workstreams
from dependencies.models import Dependency
from dependencies.suggestions import suggestions_refresh
from escalations.models import EscalationLevel, EscalationPolicy
from governance.models import Membership, Organization, Role, User
from governance.services.invitations import invitation_create
from governance.services.organizations import organization_create
from governance.services.teams import team_create
from scorecards.models import Kpi

DEMO_PASSWORD = "steerco-demo"

# email, name, role, team keys (first team listed is the one they lead, when `lead` is True)
ACME_PEOPLE = [
    ("admin@acme.test", "Ada Admin", Role.ADMIN, ["leadership"], False),
    ("ceo@acme.test", "Claire Chen", Role.EXECUTIVE, ["leadership"], True),
    ("coo@acme.test", "Omar Okafor", Role.EXECUTIVE, ["leadership"], False),
    ("cfo@acme.test", "Felix Fischer", Role.EXECUTIVE, ["finance", "leadership"], True),
    ("vp.marketing@acme.test", "Maya Martins", Role.MEMBER, ["marketing"], True),
    ("analyst.marketing@acme.test", "Leo Lambert", Role.MEMBER, ["marketing"], False),
    ("vp.supply@acme.test", "Sam Sato", Role.MEMBER, ["supply-chain"], True),
    ("planner@acme.test", "Priya Patel", Role.MEMBER, ["supply-chain"], False),
    ("vp.sales@acme.test", "Sofia Silva", Role.MEMBER, ["sales"], True),
    ("account.exec@acme.test", "Noah Nguyen", Role.MEMBER, ["sales"], False),
    ("controller@acme.test", "Frank Fuchs", Role.MEMBER, ["finance"], False),
]
ACME_TEAMS = [  # key, name, parent
    ("leadership", "Leadership", None),
    ("marketing", "Marketing", "leadership"),
    ("supply-chain", "Supply Chain", "leadership"),
    ("sales", "Sales", "leadership"),
    ("finance", "Finance", "leadership"),
]


class Command(BaseCommand):
    help = "Creates the demo organizations (Acme Electronics with KPIs, history and OKRs; Globex Retail). Idempotent."

    def handle(self, *args, **options) -> None:
        if Organization.objects.filter(slug="acme").exists():
            self.stdout.write("Demo data is already there.")
        else:
            with transaction.atomic():
                self._seed()
            self.stdout.write(self.style.SUCCESS("Seeded the demo organizations."))
        self.stdout.write(
            f"Demo logins (password {DEMO_PASSWORD}): ceo@acme.test (executive), admin@acme.test (admin), "
            "vp.marketing@acme.test (KPI owner), coo@acme.test (executive in two organizations)"
        )

    def _user(self, email: str, name: str) -> User:
        user = User.objects.filter(email=email).first()
        return user or User.objects.create_user(email, DEMO_PASSWORD, name=name)

    def _seed(self) -> None:
        admin = self._user("admin@acme.test", "Ada Admin")
        acme = organization_create(creator=admin, slug="acme", name="Acme Electronics", timezone_name="Europe/Berlin")
        memberships = {"admin@acme.test": Membership.objects.get(organization=acme, user=admin)}
        for email, name, role, _teams, _lead in ACME_PEOPLE[1:]:
            memberships[email] = Membership.objects.create(organization=acme, user=self._user(email, name), role=role)
        leads = {teams[0]: memberships[email] for email, _n, _r, teams, lead in ACME_PEOPLE if lead}
        teams = {}
        for key, name, parent in ACME_TEAMS:
            teams[key] = team_create(
                org=acme, actor=admin, key=key, name=name, parent=teams.get(parent), lead=leads.get(key)
            )
        for email, _name, _role, team_keys, _lead in ACME_PEOPLE:
            memberships[email].teams.add(*(teams[k] for k in team_keys))
        invitation_create(org=acme, actor=admin, email="new.hire@acme.test", role=Role.MEMBER, teams=[teams["sales"]])
        self._seed_policy(acme)
        seed_scorecards(acme)
        seed_data_sources(acme)
        self._seed_dependencies(acme)
        seed_formulas(acme)  # demo.formulas: a calculated KPI over two of Finance's margins
        seed_workstreams(acme)
        seed_reviews(acme)  # demo.reviews: a closed review session, its decisions, an open agenda
        # The weekly hidden-dependency run, once: it finds the leads -> stock-outs link nobody declared (demo.story).
        suggestions_refresh(org=acme)

        globex_admin = self._user("admin@globex.test", "Gus Grant")
        globex = organization_create(
            creator=globex_admin, slug="globex", name="Globex Retail", timezone_name="America/New_York"
        )
        Membership.objects.create(organization=globex, user=memberships["coo@acme.test"].user, role=Role.EXECUTIVE)
        for key, name in [("operations", "Operations"), ("stores", "Stores")]:
            team_create(org=globex, actor=globex_admin, key=key, name=name)

    def _seed_policy(self, org: Organization) -> None:
        """MANIFEST.md's standard policy, the organization's default (the demo KPIs name it)."""
        policy = EscalationPolicy.objects.create(
            organization=org,
            key="standard",
            name="Standard KPI escalation",
            mitigation_due=timedelta(days=2),
            ack_timeout=timedelta(hours=4),
            repeat=1,
        )
        EscalationLevel.objects.bulk_create(
            [
                EscalationLevel(
                    organization=org, policy=policy, position=1, targets=["team_lead"], wait=timedelta(days=1)
                ),
                EscalationLevel(
                    organization=org,
                    policy=policy,
                    position=2,
                    targets=["role:executive", "user:coo@acme.test"],
                    wait=timedelta(days=2),
                    business_hours=True,
                ),
            ]
        )
        Organization.objects.filter(pk=org.pk).update(default_escalation="standard")

    def _seed_dependencies(self, org: Organization) -> None:
        """The founding story: Marketing's lead surge drives Supply Chain's inventory and on-time delivery."""
        kpis = {k.key: k for k in Kpi.objects.for_org(org)}
        edges = [
            (
                "mkt.leads",
                "sc.inventory_turnover",
                "drives_demand",
                timedelta(days=21),
                "Campaign demand needs stock three weeks ahead",
            ),
            ("mkt.leads", "sc.otif", "drives_demand", timedelta(days=21), "More orders stress picking and freight"),
            ("sc.otif", "fin.air_freight", "consumes_capacity", timedelta(days=7), "Late orders go by air"),
            ("sales.bookings", "fin.gross_margin", "informs", None, ""),
        ]
        Dependency.objects.bulk_create(
            Dependency(organization=org, upstream=kpis[up], downstream=kpis[down], kind=kind, lag=lag, note=note)
            for up, down, kind, lag, note in edges
            if up in kpis and down in kpis
        )
