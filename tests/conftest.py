from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.utils import timezone

from dependencies.models import Dependency, SuggestedDependency
from escalations.models import (
    Decision,
    EscalationPolicy,
    MitigationAction,
    MitigationPath,
    Notification,
    ReportSubscription,
    ReviewAttendee,
    ReviewSession,
    Task,
    Webhook,
    Workstream,
)
from governance import tenancy
from governance.models import ApiToken, Invitation, Membership, Organization, Role, Scope, Secret, Team
from governance.rls import runtime_role_ensure
from governance.services.api_tokens import api_token_create
from governance.services.invitations import invitation_create
from governance.services.secrets import secret_set
from governance.services.teams import team_update
from scorecards.manual import due_period, manual_value_enter
from scorecards.models import (
    DataSource,
    ImportJob,
    KeyResult,
    Kpi,
    ManualValue,
    Objective,
    OwnershipTransfer,
    Scorecard,
)
from scorecards.services import manual_kpi_set, ownership_transfer_request
from tests.escalations.factories import (
    EscalationLevelFactory,
    EscalationPolicyFactory,
    MitigationActionFactory,
    MitigationPathFactory,
    NotificationFactory,
    TaskFactory,
    WorkstreamFactory,
)
from tests.factories import DependencyFactory, KpiFactory, MembershipFactory, OrganizationFactory, TeamFactory

# On PostgreSQL the suite runs as this role, which row-level security binds, as workers do in production (tests set
# up their data in the system scope, which only the workers' role may enter); migrations run before it takes over,
# as the owner, as in production. Tests of what the web role may not do switch to WEB_ROLE (`as_web_role`).
RUNTIME_ROLE = "steerco_test_runtime"
WEB_ROLE = "steerco_test_web"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    if connection.vendor != "postgresql":
        yield
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        runtime_role_ensure(cursor, RUNTIME_ROLE, login=False, sweeps=True)
        runtime_role_ensure(cursor, WEB_ROLE, login=False)
        # Between transactional tests pytest-django empties every table with TRUNCATE.
        cursor.execute(f"GRANT TRUNCATE ON ALL TABLES IN SCHEMA public TO {RUNTIME_ROLE}")
    connection.close()
    connection.settings_dict["OPTIONS"]["assume_role"] = RUNTIME_ROLE
    yield
    del connection.settings_dict["OPTIONS"]["assume_role"]  # the owner drops the test database
    connection.close()


@contextmanager
def as_web_role():
    """The block's statements run as the web processes' role (PostgreSQL only), as a request in production does."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET ROLE {WEB_ROLE}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {RUNTIME_ROLE}")


@pytest.fixture(autouse=True)
def _operator_scope():
    """Tests set up their data as an operator would, in every organization; the code they exercise declares its
    own scope (the middleware, the API's token check, each task), which replaces this one while it runs."""
    with tenancy.scope(system=True):
        yield


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache (rate limits, the scorecard's rows): SQLite hands a rolled-back test's
    ids to the next test, and factories write measurements past the store that versions them."""
    cache.clear()


@dataclass
class Tenant:
    """One organization with a person in every role, a team with a lead, and a pending invitation."""

    org: Organization
    admin: Membership
    executive: Membership
    member: Membership
    lead: Membership
    team: Team
    invitation: Invitation
    kpi: Kpi
    scorecard: Scorecard
    objective: Objective
    key_result: KeyResult
    transfer: OwnershipTransfer
    data_source: DataSource
    import_job: ImportJob
    api_token: ApiToken  # the organization's, with every scope
    token: str  # its secret, for Authorization: Bearer
    personal_token: str  # the member's personal token
    policy: EscalationPolicy | None = None  # named by nothing, so no KPI of the tenant follows it
    webhook: Webhook | None = None

    def client(self, membership: Membership) -> Client:
        client = Client()
        client.force_login(membership.user)
        return client

    @cached_property
    def episode(self) -> Episode:
        """An open workstream of the KPI with a path, an action, a task and a notification, made on first use:
        the engine's tests count every workstream and task, so a tenant does not carry one from the start."""
        return make_episode(self)

    @cached_property
    def review_session(self) -> ReviewSession:
        """A closed review with its attendee and one decision on the KPI, made on first use (the review tests count
        sessions and decisions)."""
        return make_review(self)

    @cached_property
    def report_subscription(self) -> ReportSubscription:
        """A weekly scorecard report to the member, made on first use (the report tests count subscriptions)."""
        sub = ReportSubscription.objects.create(
            organization=self.org,
            name="Weekly scorecard",
            content="scorecard",
            format="xlsx",
            created_by=self.admin.user,
        )
        sub.members.add(self.member)
        return sub

    @cached_property
    def secret(self) -> Secret:
        """An organization secret no source names, made on first use in the organization's own scope (the only
        one that sees secrets)."""
        with tenancy.scope(organization=self.org.pk):
            return secret_set(org=self.org, actor=self.admin.user, name="crm_token", value=f"token-of-{self.org.slug}")

    @cached_property
    def manual_value(self) -> ManualValue:
        """A second KPI kept by hand (cx.nps: the lead owns it, the member updates it, the executive confirms) with
        the member's value for the last month waiting for confirmation, made on first use."""
        nps = KpiFactory(organization=self.org, team=self.team, owner=self.lead, key="cx.nps", name="NPS")
        manual_kpi_set(
            kpi=nps, actor=self.admin.user, period="monthly", updaters=[self.member], approver=self.executive
        )
        month = due_period("monthly", timezone.localdate(timezone.now(), self.org.tzinfo))
        return manual_value_enter(kpi=nps, by=self.member, period_start_day=month, value=41)

    @cached_property
    def dependency(self) -> Dependency:
        """The KPI depends on a second KPI of the team (ops.backlog), made on first use: the scorecard and engine
        tests count the tenant's KPIs."""
        backlog = KpiFactory(organization=self.org, team=self.team, owner=self.lead, key="ops.backlog", name="Backlog")
        return DependencyFactory(
            organization=self.org, upstream=backlog, downstream=self.kpi, kind=Dependency.Kind.BLOCKS
        )

    @cached_property
    def suggestion(self) -> SuggestedDependency:
        """A suggested dependency of a second KPI on the KPI, made on first use (in the KPI's team: the cross-tenant
        tests compare the tenant's teams before and after)."""
        calls = KpiFactory(organization=self.org, team=self.team, owner=self.member, key="ops.calls", name="Calls")
        return SuggestedDependency.objects.create(
            organization=self.org,
            upstream=self.kpi,
            downstream=calls,
            coefficient=0.6,
            lag_days=7,
            points=120,
            p_value=1e-6,
            q_value=1e-4,
            computed_at=timezone.now(),
        )


@dataclass
class Episode:
    workstream: Workstream
    path: MitigationPath
    action: MitigationAction
    task: Task  # the executive's escalation task
    notification: Notification  # the executive's, in the app


def make_episode(t: Tenant) -> Episode:
    ws = WorkstreamFactory(kpi=t.kpi)
    path = MitigationPathFactory(workstream=ws, filed_by=t.lead.user)
    action = MitigationActionFactory(path=path, owner=t.member)
    task = TaskFactory(
        workstream=ws, assignee=t.executive, level=1, escalation_pass=1, dedup_key=f"{t.org.slug}:episode"
    )
    notification = NotificationFactory(
        recipient=t.executive,
        dedup_key=f"{t.org.slug}:episode",
        subject="Escalation: Throughput",
        workstream=ws,
    )
    return Episode(ws, path, action, task, notification)


def make_review(t: Tenant) -> ReviewSession:
    now = timezone.now()
    session = ReviewSession.objects.create(
        organization=t.org, title="Steering review", started_by=t.executive.user, started_at=now, closed_at=now
    )
    ReviewAttendee.objects.create(organization=t.org, session=session, membership=t.executive)
    Decision.objects.create(
        organization=t.org,
        kind=Decision.Kind.RISK_ACCEPTED,
        kpi=t.kpi,
        session=session,
        decided_by=t.executive.user,
        reason="Seasonal dip",
        kpi_status=t.kpi.status,
        expected_by=date(2026, 12, 31),
    )
    return session


def make_tenant(slug: str) -> Tenant:
    org = OrganizationFactory(slug=slug, name=slug.capitalize())
    admin = MembershipFactory(organization=org, role=Role.ADMIN, user__email=f"admin@{slug}.test")
    executive = MembershipFactory(organization=org, role=Role.EXECUTIVE, user__email=f"exec@{slug}.test")
    member = MembershipFactory(organization=org, role=Role.MEMBER, user__email=f"member@{slug}.test")
    lead = MembershipFactory(organization=org, role=Role.MEMBER, user__email=f"lead@{slug}.test")
    team = TeamFactory(organization=org, key="ops", name="Operations")
    team_update(team=team, actor=admin.user, lead=lead)
    member.teams.add(team)
    invitation, _ = invitation_create(org=org, actor=admin.user, email=f"invitee@{slug}.test", role=Role.MEMBER)
    kpi = KpiFactory(organization=org, team=team, owner=lead, key="ops.throughput", name="Throughput")
    scorecard = Scorecard.objects.create(organization=org, key="exec", name="Executive")
    scorecard.kpis.add(kpi)
    objective = Objective.objects.create(
        organization=org,
        key="o.grow",
        title="Grow",
        owner=executive,
        team=team,
        period_start=date(2026, 10, 1),
        period_end=date(2026, 12, 31),
    )
    key_result = KeyResult.objects.create(
        organization=org, objective=objective, key="kr.manual", title="Manual", owner=member, start=0, target=10
    )
    transfer = ownership_transfer_request(kpi=kpi, requester=lead, to_owner=member, reason="Reorganisation")
    data_source = DataSource.objects.create(
        organization=org,
        key="warehouse",
        kind="sql",
        every=timedelta(hours=1),
        config={"dsn_secret": "warehouse_dsn", "pulls": [{"kpi": kpi.key, "query": "select now() as at, 1 as value"}]},
    )
    import_job = ImportJob.objects.create(organization=org, created_by=admin.user, filename="data.csv")
    api_token, token = api_token_create(org=org, actor=admin.user, name="Warehouse loader", scopes=Scope.values)
    _, personal_token = api_token_create(org=org, actor=member.user, name="My script", membership=member)
    return Tenant(
        org,
        admin,
        executive,
        member,
        lead,
        team,
        invitation,
        kpi,
        scorecard,
        objective,
        key_result,
        transfer,
        data_source,
        import_job,
        api_token,
        token,
        personal_token,
        policy=make_policy(org),
        # Inactive, so that episodes other tests open announce nothing to an address that does not resolve.
        webhook=Webhook.objects.create(
            organization=org, name="Chat", url=f"https://hooks.{slug}.test/steerco", is_active=False
        ),
    )


def make_policy(org: Organization) -> EscalationPolicy:
    policy = EscalationPolicyFactory(organization=org, key="tenant-policy", name="Tenant policy")
    EscalationLevelFactory(policy=policy)
    return policy


@pytest.fixture
def tenant(db) -> Tenant:
    return make_tenant("acme")


@pytest.fixture
def stranger_tenant(db) -> Tenant:
    """Another organization: nobody in it may see or touch anything of `tenant`."""
    return make_tenant("globex")


def worker_settled(seconds: float = 120) -> None:
    """Waits until the in-process test worker has nothing queued or running. A task queues the next one (evaluation
    the outbox processing, that the delivery), which must not still run when the test's database is torn down."""
    from celery.worker import state

    from config.celery import app

    deadline, quiet_since = time.monotonic() + seconds, None
    while True:
        with app.connection_for_write() as conn:
            queued = conn.default_channel.queue_declare("celery").message_count
        if queued or state.reserved_requests:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 0.5:
            return
        assert time.monotonic() < deadline, "the worker never settled"
        time.sleep(0.1)
