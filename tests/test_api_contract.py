"""The API keeps the contract its OpenAPI document states: Schemathesis generates requests from the document (valid
ones and invalid ones), sends them over HTTP to the real application (pytest-django's live server: the whole stack,
middleware, tokens, row-level security, services) and runs every check it has on each answer: no server error, only
documented status codes, content types and headers, bodies matching their schemas, schema-valid requests
accepted and invalid ones refused, authentication enforced.

It runs on PostgreSQL only (where row-level security is real): CI runs the suite on SQLite too, and once is
enough for a run of this length. Hypothesis' seed is fixed (derandomize) and the examples per operation bounded,
so a failure is the same on every run."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.cache import cache
from django.db import connection
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from config.wsgi import application
from governance.api import PERSONAL
from governance.services.api_tokens import api_token_create
from tests.conftest import make_episode

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="runs once, on PostgreSQL, where RLS is real"),
]

# Operations whose schema-valid requests may still be refused with 422, because what decides is stored data, which
# no schema can state: a measurement's KPI key must name a KPI of the organization, a manifest must name the token's
# organization and refer to teams and members that exist, and acting on a workstream or task depends on its state
# and on who the member is (a path awaiting review, the assignee, ...). Everywhere else a schema-valid request
# that is refused fails the run.
DECIDED_BY_STORED_DATA = [
    "PUT /api/v1/manifest",
    "POST /api/v1/measurements",
    "POST /api/v1/workstreams/{workstream_id}/mitigation",
    "POST /api/v1/workstreams/{workstream_id}/review",
    "POST /api/v1/workstreams/{workstream_id}/close",
    "POST /api/v1/tasks/{task_id}/acknowledge",
    "POST /api/v1/tasks/{task_id}/answer",
]
config = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-name": DECIDED_BY_STORED_DATA,
                # Schemathesis' default for the check, plus 422.
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
                    }
                },
            }
        ]
    }
)
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application, config=config)


@pytest.fixture
def contract_tokens(transactional_db, live_server, tenant, settings):
    settings.API_RATE_LIMIT = "1000000/m"  # the rate limit's 429 is documented, but would end the run early
    make_episode(tenant)  # an open workstream with a path and a task, so that ids and filters meet real rows
    _, lead = api_token_create(org=tenant.org, actor=None, name="contract", membership=tenant.lead)
    return {"organization": tenant.token, PERSONAL: lead}


@schema.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_api_keeps_its_openapi_contract(case, contract_tokens, live_server):
    """Over HTTP, as clients call it: an organization token with every scope, or a member's personal token for
    the operations that act for a person."""
    [needs] = case.operation.definition.raw["security"][0]["TokenAuth"]
    token = contract_tokens[PERSONAL if needs == PERSONAL else "organization"]
    cache.clear()
    # A request that Schemathesis sends without its token on purpose (to see it refused) stays without one.
    headers = {} if case.operation.schema.is_security_param_negated(case) else {"Authorization": f"Bearer {token}"}
    case.call_and_validate(base_url=live_server.url, headers=headers)
