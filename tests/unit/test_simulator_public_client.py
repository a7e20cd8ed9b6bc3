"""A public JumpCloud client from PyPI, unchanged, against the simulator over real HTTP (issue 26).

The client is krink's `jumpcloud` (PyPI `jumpcloud`, 2.0.1), written against the real service by someone else:
if the simulator drifts from what the client relies on, its functions fail or read wrong data here. It is
installed apart from the project (`make install` puts it in `.venv/clients`; see the Makefile), because its
top-level package is named `jumpcloud`, as jumpsync's own client is: on the project's path one hides the other.
So it runs in a subprocess whose path holds that directory and not the repository.

Unchanged but for the base URL: the client writes `https://console.jumpcloud.com` into every URL, so the driver
rewrites that prefix to the simulator's in `requests.Session.send`, and gives the key by the client's own
environment variable, `JUMPCLOUD_API_KEY`. The client only reads (users, one user, user groups, one group, a
group's members with each member's email); it has no writes for users or groups.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from simulator.server import SimulatorServer
from simulator.state import SimulatorState
from simulator.tenant import TenantSpec, generate_tenant

KEY = "sim-public-client-key-3c9e"
# More than one page of users (the client pages by 100) and a group with members.
SPEC = TenantSpec(seed=31, users=230, admins=3, groups=6, apps=2, avg_members_per_group=5)
CLIENTS = Path(os.environ.get("JUMPSYNC_CONFORMANCE_CLIENTS", Path(sys.prefix) / "clients"))

DRIVER = r"""
import contextlib, io, json, os, sys
import requests

SIM = os.environ["SIM_URL"]
_send = requests.Session.send


def send(self, request, **kwargs):
    request.url = request.url.replace("https://console.jumpcloud.com", SIM, 1)
    return _send(self, request, **kwargs)


requests.Session.send = send
import jumpcloud.jumpcloud as jc

assert jc.__file__.startswith(os.environ["CLIENTS"]), jc.__file__
args = json.loads(sys.argv[1])
out = {"module": jc.__file__}
out["users"] = jc.get_systemusers_json()
out["user"] = jc.get_systemusers_json_single(args["user_id"])
out["email"] = jc.get_user_email(args["user_id"])
with contextlib.redirect_stdout(io.StringIO()) as printed:
    out["suspended"] = jc.list_users_suspended()
    jc.list_users()
out["list_users"] = printed.getvalue().splitlines()[len(out["suspended"]):]
out["groups"] = jc.get_usergroups_json()
out["group"] = jc.get_usergroups_json(group_id=args["group_id"])
with contextlib.redirect_stdout(io.StringIO()) as printed:
    out["details"] = jc.list_usergroups_details(args["group_id"])
    jc.list_usergroups_members(args["group_id"])
out["members"] = printed.getvalue().splitlines()[-args["members"]:] if args["members"] else []
print(json.dumps(out))
"""


def run_client(url: str, args: dict) -> dict:
    if not (CLIENTS / "jumpcloud" / "jumpcloud.py").exists():
        pytest.fail(f"the public client is not installed in {CLIENTS}: run `make install` (or pip install "
                    f"--target {CLIENTS} 'jumpcloud>=2.0.1')")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(CLIENTS), SIM_URL=url, CLIENTS=str(CLIENTS), JUMPCLOUD_API_KEY=KEY)
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(args)], env=env, cwd=CLIENTS,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def observed():
    tenant = generate_tenant(SPEC)
    with SimulatorServer(SimulatorState(orgs={tenant.org_id: tenant}, api_key=KEY)) as srv:
        dump = httpx.get(srv.url + "/_sim/tenant").json()
        user = dump["users"][117]
        suspended = next(u for u in dump["users"] if u.get("state") == "ACTIVATED" and not u["suspended"])
        httpx.put(srv.url + f"/api/systemusers/{suspended['_id']}", json={"suspended": True},
                  headers={"x-api-key": KEY}).raise_for_status()
        dump = httpx.get(srv.url + "/_sim/tenant").json()
        group = max(dump["groups"], key=lambda g: len(g["members"]))
        args = {"user_id": user["_id"], "group_id": group["id"], "members": len(group["members"])}
        yield run_client(srv.url, args), dump, user, group


def test_the_client_is_the_public_one_not_jumpsyncs(observed):
    out, *_ = observed
    assert out["module"].startswith(str(CLIENTS))


def test_users_are_paged_whole_and_read_one_by_one(observed):
    out, dump, user, _ = observed
    assert out["users"]["totalCount"] == len(dump["users"]) == 230
    assert [u["_id"] for u in out["users"]["results"]] == [u["_id"] for u in dump["users"]]
    assert out["user"] == next(u for u in dump["users"] if u["_id"] == user["_id"])
    assert out["email"] == user["email"]
    assert out["suspended"] == {u["_id"]: u["email"] for u in dump["users"] if u["suspended"] is True}
    assert len(out["list_users"]) == 230 and out["list_users"][117].startswith(f"{user['_id']} {user['username']} ")


def test_groups_one_group_and_its_members(observed):
    out, dump, _, group = observed
    assert [g["id"] for g in out["groups"]] == [g["id"] for g in dump["groups"]]  # `/api/v2/usergroups/?...`
    assert out["group"]["id"] == group["id"] == out["details"]["id"]
    assert out["details"]["name"] == group["name"]
    emails = {u["_id"]: u["email"] for u in dump["users"]}
    assert out["members"] == [f"{uid} {emails[uid]}" for uid in group["members"]]
