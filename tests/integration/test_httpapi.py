"""The HTTP API over real HTTP: ``jumpsync api`` as a process on a free loopback port, on SQLite and on a real
PostgreSQL server, enqueueing on a real Redis (no worker here: tests/integration/test_httpapi_e2e.py applies
requests). Tokens are made with ``auth.tokens`` on the same database, as ``jumpsync tokens create`` makes them.

What is checked: every refusal of a token (none, malformed, unknown, revoked, expired: 401 with a Bearer
challenge, the token never echoed), scopes by connector and by action (403 naming the missing one), usage
errors refused before anything is written, ``requested_by`` from the token and ``on_behalf_of`` from the body,
idempotency shared with ``jumpsync provision``, the CLI's filters, retry, the OpenAPI document as checked in
(``JUMPSYNC_WRITE_OPENAPI=1`` rewrites docs/openapi.json from the served one), and Schemathesis against that
document with bounded examples: no 5xx, every answer as documented.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import update
from sqlmodel import col

from auth.tokens import revoke
from models.tables import ApiToken, ProvisioningRequest, table_of, utcnow
from provisioning import requests as prequests
from tests.support.api_server import ServedApi, served_api
from tests.support.constants import ROOT

OPENAPI = ROOT / "docs" / "openapi.json"

CONFIG = """\
[[connectors]]
name = "acme"
api_key_env = "ACME_KEY"

[[connectors]]
name = "other"
api_key_env = "OTHER_KEY"

[connectors.provisioning]
dry_run = true
"""

ADD = {"group": "Engineering", "user": "alice@example.com"}


def count(served: ServedApi) -> int:
    """Requests recorded so far."""
    return len(prequests.listing(served.engine, limit=100_000))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request, tmp_path_factory, redis_url):
    """``jumpsync api`` on a migrated database with connectors acme and other."""
    with served_api(request, tmp_path_factory, redis_url, CONFIG, redis_db=7) as api:
        yield api


def submit(client: httpx.Client, connector: str = "acme", action: str = "group.add-member", **body) -> httpx.Response:
    return client.post("/v1/requests", json={"connector": connector, "action": action, "params": ADD, **body})


# --- authentication ------------------------------------------------------------------------------------------

def test_healthz_needs_no_token(served):
    answer = httpx.get(f"{served.url}/healthz")
    assert answer.status_code == 200 and answer.json() == {"ok": True}


ROUTES = [("GET", "/v1/requests"), ("POST", "/v1/requests"), ("GET", "/v1/requests/abc"),
          ("POST", "/v1/requests/abc/retry"), ("GET", "/v1/connectors"), ("GET", "/v1/connectors/acme/access/alice"),
          ("GET", "/v1/connectors/acme/holders/group:Engineering")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_but_healthz_needs_a_token(served, method, path):
    before = count(served)
    answer = httpx.request(method, f"{served.url}{path}", json={"connector": "acme", "action": "group.add-member",
                                                                 "params": ADD} if method == "POST" else None)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json()["error"]["reason"] == "missing"
    assert count(served) == before


def test_refused_tokens_say_why_and_never_echo_the_token(served):
    revoked, revoked_name = served.token("read:*")
    revoke(served.engine, revoked_name)
    expired, expired_name = served.token("read:*", expires_in=timedelta(hours=1))
    with served.engine.begin() as connection:
        connection.execute(update(ApiToken).where(col(ApiToken.name) == expired_name)
                           .values(expires_at=utcnow() - timedelta(minutes=1)))
    good, _ = served.token("read:*")
    token_id, secret = good.removeprefix("jst_").split("_", 1)
    wrong_secret = f"jst_{token_id}_{'A' * len(secret)}"
    cases = {"not-a-jumpsync-token": "malformed", wrong_secret: "unknown", revoked: "revoked", expired: "expired"}
    for presented, reason in cases.items():
        answer = served.client(presented).get("/v1/requests")
        assert answer.status_code == 401, (reason, answer.text)
        assert answer.json()["error"]["reason"] == reason
        assert answer.headers["www-authenticate"].startswith("Bearer") and "invalid_token" in \
            answer.headers["www-authenticate"]
        assert presented not in answer.text and presented not in str(answer.headers)
    basic = httpx.get(f"{served.url}/v1/requests", headers={"Authorization": f"Basic {good}"})
    assert basic.status_code == 401 and basic.json()["error"]["reason"] == "malformed"
    assert served.client(good).get("/v1/requests").status_code == 200


# --- scopes --------------------------------------------------------------------------------------------------

def test_provision_scopes_narrow_by_connector_and_action(served):
    token, name = served.token("provision:acme:group.add-member")
    client = served.client(token)
    before = count(served)
    wrong_action = submit(client, action="group.remove-member")
    assert wrong_action.status_code == 403
    assert wrong_action.json()["error"]["missing_scope"] == "provision:acme:group.remove-member"
    wrong_connector = submit(client, connector="other")
    assert wrong_connector.status_code == 403
    assert wrong_connector.json()["error"]["missing_scope"] == "provision:other:group.add-member"
    assert count(served) == before, "a request outside the token's scopes writes nothing"
    accepted = submit(client)
    assert accepted.status_code == 202, accepted.text
    request = accepted.json()
    assert request["status"] == "pending" and request["requested_by"] == f"token:{name}"
    # It may follow its own request without read:acme, but not list the connector's.
    assert client.get(f"/v1/requests/{request['id']}").json()["id"] == request["id"]
    listed = client.get("/v1/requests", params={"connector": "acme"})
    assert listed.status_code == 403 and listed.json()["error"]["missing_scope"] == "read:acme"
    assert client.get("/v1/requests").json() == []
    assert client.get("/v1/connectors").json() == []


def test_read_scopes_filter_what_is_listed(served):
    writer, _ = served.token("provision:*")
    for connector in ("acme", "other"):
        assert submit(served.client(writer), connector=connector).status_code == 202
    reader = served.client(served.token("read:acme")[0])
    listed = reader.get("/v1/requests", params={"limit": 1000}).json()
    assert listed and {r["connector"] for r in listed} == {"acme"}
    other = next(r for r in served.client(served.token("read:*")[0]).get("/v1/requests").json()
                 if r["connector"] == "other")
    refused = reader.get(f"/v1/requests/{other['id']}")
    assert refused.status_code == 403 and refused.json()["error"]["missing_scope"] == "read:other"
    assert [c["connector"] for c in reader.get("/v1/connectors").json()] == ["acme"]
    assert reader.get("/v1/connectors/other/access/alice").json()["error"]["missing_scope"] == "read:other"
    assert reader.get("/v1/connectors/other/holders/group:x").status_code == 403
    assert submit(reader).json()["error"]["missing_scope"] == "provision:acme:group.add-member"


# --- submitting ----------------------------------------------------------------------------------------------

def test_requested_by_is_the_token_and_on_behalf_of_the_body(served):
    token, name = served.token("provision:acme")
    client = served.client(token)
    before = count(served)
    forged = submit(client, requested_by="cli:alice")
    assert forged.status_code == 422
    assert forged.json()["error"]["problems"][0]["location"] == "body.requested_by"
    assert count(served) == before
    request = submit(client, on_behalf_of="bob@example.com", idempotency_key=f"TICKET-{uuid.uuid4().hex}").json()
    assert request["requested_by"] == f"token:{name}" and request["on_behalf_of"] == "bob@example.com"
    assert prequests.get(served.engine, request["id"])["on_behalf_of"] == "bob@example.com"


def test_usage_errors_are_refused_before_anything_is_written(served):
    client = served.client(served.token("provision:*")[0])
    before = count(served)
    cases = [
        ({"connector": "acme", "action": "group.explode", "params": ADD}, 422, "body.action"),
        ({"connector": "acme", "params": ADD}, 422, "body.action"),
        ({"connector": "acme", "action": "group.add-member", "params": {"group": "Engineering"}}, 422, "user"),
        ({"connector": "acme", "action": "group.add-member", "params": {**ADD, "colour": "red"}}, 422, "colour"),
        ({"connector": "acme", "action": "group.add-member", "params": ADD, "idempotency_key": ""}, 422,
         "body.idempotency_key"),
        ({"connector": "nowhere", "action": "group.add-member", "params": ADD}, 404, "nowhere"),
    ]
    for body, status, named in cases:
        answer = client.post("/v1/requests", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert named in answer.json()["error"]["message"], answer.json()
    not_json = client.post("/v1/requests", content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["error"]["code"] == "invalid_request"
    assert count(served) == before


def test_a_connector_name_is_taken_in_any_case_as_by_every_command(served):
    client = served.client(served.token("provision:acme", "read:acme")[0])
    answer = submit(client, connector="ACME")
    assert answer.status_code == 202, answer.text
    assert answer.json()["connector"] == "acme"
    listed = client.get("/v1/requests", params={"connector": "Acme", "limit": 1000})
    assert listed.status_code == 200 and answer.json()["id"] in {r["id"] for r in listed.json()}
    assert client.get("/v1/audit", params={"connector": "ACME"}).status_code == 200
    assert client.get("/v1/connectors/ACME/access/nobody@example.com").status_code == 404  # read, nobody found


def test_a_policy_refusal_is_recorded_and_answered_422(served):
    client = served.client(served.token("provision:acme")[0])
    answer = submit(client, action="user.delete", params={"user": "alice@example.com"})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "rejected" and "not allowed" in error["message"]
    assert prequests.get(served.engine, error["request"]["id"])["status"] == "rejected"


def test_a_dry_run_when_asked_for_or_when_the_policy_says_so(served):
    client = served.client(served.token("provision:acme")[0])
    assert submit(client, dry_run=True).json()["dry_run"] is True
    assert submit(client).json()["dry_run"] is False
    # A connector whose policy is dry_run: no caller turns it off.
    other = served.client(served.token("provision:other")[0])
    assert submit(other, connector="other", dry_run=False).json()["dry_run"] is True


def test_one_idempotency_key_is_one_request_across_the_api_and_the_cli(served, tmp_path):
    key = f"TICKET-{uuid.uuid4().hex}"
    cli = subprocess.run([sys.executable, "-m", "cli", "provision", "acme", "group.add-member", "--group",
                          ADD["group"], "--user", ADD["user"], "--idempotency-key", key, "--json"],
                         env={**served.env, "PYTHONPATH": str(ROOT)}, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0, cli.stderr
    first = json.loads(cli.stdout)
    client = served.client(served.token("provision:acme")[0])
    again = submit(client, idempotency_key=key)
    assert again.status_code == 202 and again.json()["id"] == first["id"]
    assert submit(client, idempotency_key=key).json()["id"] == first["id"]
    requests = table_of(ProvisioningRequest)
    with served.engine.connect() as connection:
        rows = connection.execute(requests.select().where(requests.c.idempotency_key == key)).all()
    assert len(rows) == 1
    # The same key for something else is refused, as from the CLI.
    different = submit(client, idempotency_key=key, params={"group": "Sales", "user": ADD["user"]})
    assert different.status_code == 422 and key in different.json()["error"]["message"]


# --- reading, listing, retrying ------------------------------------------------------------------------------

def test_listing_takes_the_cli_filters(served):
    client = served.client(served.token("provision:*", "read:*")[0])
    submit(client, connector="other")
    rejected = submit(client, connector="other", action="role.set", params={"admin": "a@example.com", "role": "x"})
    assert rejected.status_code == 422
    listed = client.get("/v1/requests", params={"connector": "other", "status": "rejected", "limit": 1000}).json()
    assert listed and all(r["connector"] == "other" and r["status"] == "rejected" for r in listed)
    assert listed[0]["id"] == rejected.json()["error"]["request"]["id"], "newest first"
    assert len(client.get("/v1/requests", params={"limit": 1}).json()) == 1
    by_action = client.get("/v1/requests", params={"action": "role.set", "limit": 1000}).json()
    assert by_action and {r["action"] for r in by_action} == {"role.set"}
    for params, named in [({"status": "sleeping"}, "query.status"), ({"limit": 0}, "query.limit"),
                          ({"action": "nope"}, "query.action")]:
        answer = client.get("/v1/requests", params=params)
        assert answer.status_code == 422 and answer.json()["error"]["problems"][0]["location"] == named
    unknown = client.get("/v1/requests", params={"connector": "nowhere"})
    assert unknown.status_code == 404 and "nowhere" in unknown.json()["error"]["message"]


def test_show_and_retry(served):
    client = served.client(served.token("provision:acme", "read:acme")[0])
    request = submit(client).json()
    assert client.get(f"/v1/requests/{request['id']}").json() == request
    missing = client.get("/v1/requests/0123456789abcdef")
    assert missing.status_code == 404 and "0123456789abcdef" in missing.json()["error"]["message"]
    pending = client.post(f"/v1/requests/{request['id']}/retry")
    assert pending.status_code == 409 and "only a failed request" in pending.json()["error"]["message"]
    with served.engine.begin() as connection:
        connection.execute(update(ProvisioningRequest).where(col(ProvisioningRequest.id) == request["id"])
                           .values(status="failed", attempts=3, last_error="boom"))
    narrow = served.client(served.token("provision:acme:app.grant")[0])
    refused = narrow.post(f"/v1/requests/{request['id']}/retry")
    assert refused.status_code == 403 and refused.json()["error"]["missing_scope"] == "provision:acme:group.add-member"
    retried = client.post(f"/v1/requests/{request['id']}/retry")
    assert retried.status_code == 202
    assert retried.json()["status"] == "pending" and retried.json()["attempts"] == 0
    assert client.post("/v1/requests/0123456789abcdef/retry").status_code == 404


def test_views_name_what_they_cannot_find(served):
    client = served.client(served.token("read:*")[0])
    for path in ("/v1/connectors/nowhere/access/alice", "/v1/connectors/nowhere/holders/group:Engineering"):
        answer = client.get(path)
        assert answer.status_code == 404 and "'nowhere' has never been synced" in answer.json()["error"]["message"]
    submit(served.client(served.token("provision:acme")[0]))  # acme is registered, with nothing synced
    nobody = client.get("/v1/connectors/acme/access/alice")
    assert nobody.status_code == 404 and "'alice'" in nobody.json()["error"]["message"]
    bad_target = client.get("/v1/connectors/acme/holders/printer:x")
    assert bad_target.status_code == 422 and "app:NAME" in bad_target.json()["error"]["message"]
    status = client.get("/v1/connectors").json()
    assert {c["connector"] for c in status} >= {"acme", "other"}


def test_errors_for_unknown_paths_are_json(served):
    answer = served.client(served.token("read:*")[0]).get("/v1/nothing-here")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


# --- the OpenAPI document ------------------------------------------------------------------------------------

def test_the_served_openapi_document_is_the_checked_in_one(served):
    document = httpx.get(f"{served.url}/openapi.json").json()
    if os.environ.get("JUMPSYNC_WRITE_OPENAPI"):
        OPENAPI.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    assert document == json.loads(OPENAPI.read_text()), \
        "docs/openapi.json differs from the served document: JUMPSYNC_WRITE_OPENAPI=1 rewrites it"


@pytest.fixture(scope="module")
def all_scopes(served) -> str:
    return served.token("provision:*", "read:*", "approve:*")[0]


#: The document as checked in, which test_the_served_openapi_document_is_the_checked_in_one holds equal to the
#: one the server serves (loaded here, at collection, because no server runs yet).
schema = schemathesis.openapi.from_path(str(OPENAPI))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_conforms_to_its_openapi_document(case, served, all_scopes):
    """Generated requests with a token holding every scope: no 5xx, and every answer (status, content type,
    body) as the document says."""
    case.call_and_validate(base_url=served.url, headers={"Authorization": f"Bearer {all_scopes}"},
                           checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                   response_schema_conformance])
