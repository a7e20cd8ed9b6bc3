"""``GET /v1/audit`` over real HTTP, on SQLite and PostgreSQL: the trail names the tokens that submitted,
approved and retried; a token reads only the connectors it may read; bad filters are refused."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from models.tables import ProvisioningRequest
from tests.support.api_server import GATED_CONFIG, served_api

CONFIG = GATED_CONFIG + """
[[connectors]]
name = "other"
api_key_env = "OTHER_KEY"
"""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request, tmp_path_factory, redis_url):
    """``client(*scopes)`` (a client with a new token of these scopes, and the requester it records), and the
    engine."""
    with served_api(request, tmp_path_factory, redis_url, CONFIG, redis_db=8) as served:
        def client(*scopes: str):
            text, name = served.token(*scopes)
            return served.client(text), f"token:{name}"

        yield client, served.engine


def test_the_trail_names_each_token_and_stays_within_scope(api):
    client, engine = api
    (desk, desk_name), (first, first_name), (second, second_name) = (
        client("provision:gated"), client("approve:gated"), client("approve:gated"))
    reader, _ = client("read:gated")
    answer = desk.post("/v1/requests", json={"connector": "gated", "action": "group.add-member",
                                             "params": {"group": "Prod Admins", "user": "alice@example.com"},
                                             "on_behalf_of": "alice@example.com"})
    assert answer.status_code == 202, answer.text
    rid = answer.json()["id"]
    assert first.post(f"/v1/requests/{rid}/approve", json={"comment": "OPS-9"}).status_code == 200
    assert second.post(f"/v1/requests/{rid}/approve").json()["status"] == "pending"
    with engine.begin() as connection:  # as a worker that failed it would leave it
        connection.execute(update(ProvisioningRequest).where(ProvisioningRequest.id == rid)
                           .values(status="failed", last_error="boom"))
    assert desk.post(f"/v1/requests/{rid}/retry").status_code == 202

    trail = reader.get("/v1/audit", params={"connector": "gated"})
    assert trail.status_code == 200, trail.text
    mine = [(e["kind"], e["actor"]) for e in trail.json() if e["request_id"] == rid]
    assert mine == [("submitted", desk_name), ("approved", first_name), ("approved", second_name),
                    ("retried", desk_name)]
    assert all(e["on_behalf_of"] == "alice@example.com" for e in trail.json() if e["request_id"] == rid)
    assert [e["request_id"] for e in reader.get("/v1/audit").json()] == [e["request_id"] for e in trail.json()]
    assert len(reader.get("/v1/audit", params={"limit": 1}).json()) == 1

    outsider, _ = client("read:other")
    assert outsider.get("/v1/audit").json() == []  # no request of its connectors
    refused = outsider.get("/v1/audit", params={"connector": "gated"})
    assert refused.status_code == 403 and refused.json()["error"]["missing_scope"] == "read:gated", refused.text
    assert reader.get("/v1/audit", params={"since": "yesterday"}).status_code == 422
    assert reader.get("/v1/audit", params={"since": "2999-01-01T00:00:00Z"}).json() == []
    assert reader.get("/v1/audit", params={"until": "0001-01-01T00:00:00+05:00"}).status_code == 422
    assert reader.get("/v1/audit", params={"connector": "unknown"}).status_code in (403, 404)
