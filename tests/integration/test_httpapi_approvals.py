"""Approvals over the HTTP API, on SQLite and PostgreSQL: ``jumpsync api`` as a process on a loopback port.

A connector whose policy wants two approvers for groups named ``*admin*``: a request for such a group waits;
its requester cannot approve it; a token without ``approve:<connector>`` cannot either; one principal decides
once; the second distinct approval makes it pending; a denial ends it. The decisions show on the request.
"""

from __future__ import annotations

import pytest

from tests.support.api_server import GATED_CONFIG, served_api

CONFIG = GATED_CONFIG


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request, tmp_path_factory, redis_url):
    """``api(*scopes)``: a client of the served API with a new token of these scopes."""
    with served_api(request, tmp_path_factory, redis_url, CONFIG, redis_db=8) as served:
        yield lambda *scopes: served.client(served.token(*scopes)[0])


def _submit(client, group: str) -> dict:
    answer = client.post("/v1/requests", json={"connector": "gated", "action": "group.add-member",
                                               "params": {"group": group, "user": "alice@example.com"}})
    assert answer.status_code == 202, answer.text
    return answer.json()


def test_a_gated_request_waits_for_two_approvers_other_than_its_requester(api):
    desk = api("provision:gated", "read:gated", "approve:gated")
    first, second, reader = api("approve:gated"), api("approve:gated"), api("read:gated")
    request = _submit(desk, "Prod Admins")
    assert request["status"] == "awaiting_approval"
    path = f"/v1/requests/{request['id']}"

    own = desk.post(f"{path}/approve", json={"comment": "mine"})
    assert own.status_code == 403 and own.json()["error"]["code"] == "self_approval", own.text
    assert reader.post(f"{path}/approve").status_code == 403  # read is not approve
    assert first.post(f"{path}/approve", json={"comment": "ticket 42"}).json()["status"] == "awaiting_approval"
    again = first.post(f"{path}/approve")
    assert again.status_code == 409 and "already" in again.json()["error"]["message"], again.text
    approved = second.post(f"{path}/approve")
    assert approved.status_code == 200 and approved.json()["status"] == "pending", approved.text

    shown = reader.get(path).json()
    assert shown["approvals_required"] == 2 and shown["approval_expires_at"]
    assert [(d["decision"], d["comment"]) for d in shown["decisions"]] == [("approve", "ticket 42"),
                                                                           ("approve", None)]
    late = api("approve:gated").post(f"{path}/deny")
    assert late.status_code == 409, late.text  # decided: no longer awaiting


def test_a_denial_ends_it_and_an_ungated_request_needs_no_approval(api):
    desk, approver = api("provision:gated"), api("approve:gated", "read:gated")
    waiting = _submit(desk, "admins-eu")
    denied = approver.post(f"/v1/requests/{waiting['id']}/deny", json={"comment": "no ticket"})
    assert denied.status_code == 200 and denied.json()["status"] == "denied", denied.text
    assert approver.post(f"/v1/requests/{waiting['id']}/approve").status_code == 409

    plain = _submit(desk, "Engineering")
    assert plain["status"] == "pending"
    assert "decisions" not in approver.get(f"/v1/requests/{plain['id']}").json()  # it needed no approval
    assert approver.post(f"/v1/requests/{plain['id']}/approve").status_code == 409  # nothing to approve


def test_deciding_needs_a_token_and_a_known_request(api):
    approver = api("approve:gated")
    assert approver.post("/v1/requests/nope/approve").status_code == 404
    request = _submit(api("provision:gated"), "Admins")
    submitter = api("provision:gated")  # may ask, may not decide
    assert submitter.post(f"/v1/requests/{request['id']}/approve").status_code == 403
    bad = approver.post(f"/v1/requests/{request['id']}/approve", json={"who": "me"})
    assert bad.status_code == 422, bad.text  # the body says nothing but a comment
