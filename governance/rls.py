"""The row-level security policies: which tables are tenant-owned and the SQL that walls them in.

A table is tenant-owned when its model has an `organization` foreign key; a link table without one (a
many-to-many table, guardian's per-KPI and per-team permissions) is tenant-owned through the rows it links, and
its rows are visible only while every tenant row they point at is. A new table is covered by calling
`protect_tables` from its migration; tests/governance/test_rls.py fails for any table left out.
"""

from __future__ import annotations

from psycopg import sql

# The group role whose members may enter the system scope: the workers' role and the owner, never the web's. The
# settings are anyone's to write (set_config), so the setting alone would let an injected statement in a web
# request switch the scope on; the membership is not the web role's to grant itself.
SYSTEM_ROLE = "steerco_sweeper"

FUNCTIONS = f"""
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SYSTEM_ROLE}') THEN
        CREATE ROLE {SYSTEM_ROLE} NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- another database of the cluster made it first
END $$;
DO $$ BEGIN
    IF NOT pg_has_role(current_user, '{SYSTEM_ROLE}', 'MEMBER') THEN
        GRANT {SYSTEM_ROLE} TO CURRENT_USER;  -- the owner runs migrations and operators' commands
    END IF;
END $$;
CREATE OR REPLACE FUNCTION steerco_organization() RETURNS bigint LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('steerco.organization', true), '')::bigint $$;
CREATE OR REPLACE FUNCTION steerco_user() RETURNS bigint LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('steerco.user', true), '')::bigint $$;
CREATE OR REPLACE FUNCTION steerco_token() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('steerco.token', true), '') $$;
CREATE OR REPLACE FUNCTION steerco_system() RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN coalesce(current_setting('steerco.system', true), '') = 'on'
                 THEN pg_has_role(current_user, '{SYSTEM_ROLE}', 'MEMBER') ELSE false END $$;
-- Whether row `row_id` of tenant table `tbl` belongs to an organization other than `org`: the one question about
-- other organizations a web request may ask (governance.access audits a probe of another organization's ids).
-- It runs as its owner, in the system scope for its own duration only.
CREATE OR REPLACE FUNCTION steerco_elsewhere(tbl regclass, row_id bigint, org bigint) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public SET steerco.system = 'on'
    AS $$
    DECLARE
        pk name;
        found boolean;
    BEGIN
        SELECT a.attname INTO pk FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = tbl AND i.indisprimary AND i.indnatts = 1;
        IF pk IS NULL OR NOT EXISTS (
            SELECT FROM pg_attribute WHERE attrelid = tbl AND attname = 'organization_id' AND NOT attisdropped
        ) THEN
            RETURN false;
        END IF;
        EXECUTE format('SELECT EXISTS (SELECT FROM %s WHERE %I = $1 AND organization_id <> $2)', tbl, pk)
            INTO found USING row_id, org;
        RETURN found;
    END $$;
"""
DROP_FUNCTIONS = """
DROP FUNCTION IF EXISTS steerco_organization(); DROP FUNCTION IF EXISTS steerco_user();
DROP FUNCTION IF EXISTS steerco_token(); DROP FUNCTION IF EXISTS steerco_system();
DROP FUNCTION IF EXISTS steerco_elsewhere(regclass, bigint, bigint);
"""
# Each setting is read through a scalar subquery, which PostgreSQL evaluates once per statement (an InitPlan):
# called bare, the functions would run for every row, and a sweep reading 100,000 rows in the system scope took
# 3.5 times as long as the owner's read. The system scope is tested first so that it skips the per-row probe of a
# link table's parents.
ORGANIZATION, SYSTEM = "(SELECT steerco_organization())", "(SELECT steerco_system())"
IN_SCOPE = f"({SYSTEM} OR organization_id = {ORGANIZATION})"

# What a scope other than an organization's may read (governance.tenancy): a user their own memberships, a caller
# presenting a token's or an invitation's digest that one row; and security events of no organization (a failed
# login for an unknown address) may be written and read in any scope, being no organization's.
UNOWNED = "CREATE POLICY unowned ON {t} USING (organization_id IS NULL) WITH CHECK (organization_id IS NULL)"
EXTRA_POLICIES = {
    "governance_auditevent": [UNOWNED],
    "governance_securityeventrepeat": [UNOWNED],
    "governance_membership": ["CREATE POLICY own ON {t} FOR SELECT USING (user_id = (SELECT steerco_user()))"],
    "governance_apitoken": ["CREATE POLICY presented ON {t} FOR SELECT USING (digest = (SELECT steerco_token()))"],
    "governance_invitation": [
        "CREATE POLICY presented ON {t} FOR SELECT USING (token_hash = (SELECT steerco_token()))"
    ],
    # A share link is opened by presenting its token's digest, before its organization is known.
    "collaboration_sharelink": [
        "CREATE POLICY presented ON {t} FOR SELECT USING (token_hash = (SELECT steerco_token()))"
    ],
    # The login page learns which organization's identity provider covers an email by presenting its domain.
    # Slack's requests name their workspace before the organization is known (escalations.notify.slack).
    "escalations_slackinstallation": [
        "CREATE POLICY presented ON {t} FOR SELECT USING (team_id = (SELECT steerco_token()))"
    ],
    "governance_ssodomain": ["CREATE POLICY presented ON {t} FOR SELECT USING (domain = (SELECT steerco_token()))"],
}
POLICY_NAMES = ["tenant", "own", "presented", "unowned"]
# Tables read only in their own organization's scope, never in the system scope of the beat's sweeps and the
# operators' commands: an organization's secrets are decrypted by its own tasks and pages, nothing else.
ORGANIZATION_ONLY = {"governance_secret"}


def is_tenant_model(model) -> bool:
    return any(field.name == "organization" for field in model._meta.concrete_fields)


def tenant_parents(model) -> list:
    """The foreign keys of a link table that point at tenant rows."""
    return [f for f in model._meta.concrete_fields if f.is_relation and is_tenant_model(f.related_model)]


def tenant_tables(models) -> dict[str, str]:
    """Every tenant-owned table of `models`, with the condition a row must meet to be seen or written."""
    tables = {}
    for model in models:
        if model._meta.proxy or not model._meta.managed:
            continue
        if model._meta.db_table in ORGANIZATION_ONLY:
            tables[model._meta.db_table] = f"organization_id = {ORGANIZATION}"
        elif is_tenant_model(model):
            tables[model._meta.db_table] = IN_SCOPE
        elif parents := tenant_parents(model):
            tables[model._meta.db_table] = (
                f"{SYSTEM} OR ("
                + " AND ".join(
                    f"EXISTS (SELECT FROM {f.related_model._meta.db_table} p WHERE p.id = {f.column} AND "
                    f"p.organization_id = {ORGANIZATION})"
                    for f in parents
                )
                + ")"
            )
    return tables


def protect_tables(schema_editor, models) -> None:
    """Row-level security, enforced on the owner too, for each tenant table of `models` (idempotent)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTIONS, params=None)
    for table, condition in tenant_tables(models).items():
        schema_editor.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY", params=None)
        schema_editor.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY", params=None)
        for name in POLICY_NAMES:
            schema_editor.execute(f"DROP POLICY IF EXISTS {name} ON {table}", params=None)
        schema_editor.execute(
            f"CREATE POLICY tenant ON {table} USING ({condition}) WITH CHECK ({condition})", params=None
        )
        for policy in EXTRA_POLICIES.get(table, []):
            schema_editor.execute(policy.format(t=table), params=None)


def unprotect_tables(schema_editor, models) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in tenant_tables(models):
        for name in POLICY_NAMES:
            schema_editor.execute(f"DROP POLICY IF EXISTS {name} ON {table}", params=None)
        schema_editor.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY", params=None)
        schema_editor.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY", params=None)
    schema_editor.execute(DROP_FUNCTIONS, params=None)


def runtime_role_ensure(cursor, name: str, *, login: bool = True, sweeps: bool = False) -> None:
    """Creates the runtime role if it is missing (a NOLOGIN one for a session to SET ROLE to) and grants it what it
    may do: read and write rows, which row-level security filters, nothing to the schema; tables and sequences of
    later migrations are granted as they are created. `sweeps` makes it the workers' role, a member of SYSTEM_ROLE
    that may enter the system scope; without it the role (the web's) is not, or no longer, a member. An existing
    role that escapes the policies is refused."""
    cursor.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = %s", [name])
    row = cursor.fetchone()
    role = sql.Identifier(name).as_string(cursor.connection)
    if row is None:
        cursor.execute(f"CREATE ROLE {role} {'LOGIN' if login else 'NOLOGIN'} NOSUPERUSER NOBYPASSRLS")
    elif row[0]:
        raise ValueError(f"{name} is a superuser or bypasses row-level security; choose another role.")
    for statement in [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
        f"{'GRANT' if sweeps else 'REVOKE'} {SYSTEM_ROLE} {'TO' if sweeps else 'FROM'} {role}",
    ]:
        cursor.execute(statement)


def may_enter_system_scope(cursor) -> bool:
    cursor.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", [SYSTEM_ROLE])
    return cursor.fetchone()[0]
