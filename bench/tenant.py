"""What the bench reads from and does to the simulated tenant: R_min from its dump, and the 1% change."""

from __future__ import annotations

import math
import random

import httpx


def pages(n: int) -> int:
    """Requests to list n records at 100 a page; an empty listing is one request."""
    return max(1, math.ceil(n / 100))


def r_min_parts(dump: dict) -> dict[str, int]:
    """R_min of each fetch part: the same formula as the tests' ``r_min`` (tests/integration/test_sync_pipeline.py),
    split by the part that makes the requests. Roles, admin links and access through groups cost nothing: they
    are derived from what the fetch parts already have. Apps are listed twice (v1 records, v2 provisioning)."""
    return {
        "user": pages(len(dump["users"])),
        "admin": pages(len(dump["admins"])),
        "group": pages(len(dump["groups"])) + sum(pages(len(g["members"])) for g in dump["groups"]),
        "app": 2 * pages(len(dump["apps"]))
               + sum(pages(len(a["users"])) + pages(len(a["groups"])) for a in dump["apps"]),
    }


def shape(dump: dict) -> dict[str, int]:
    """Sizes of the tenant, for the growth table."""
    return {
        "users": len(dump["users"]), "admins": len(dump["admins"]), "groups": len(dump["groups"]),
        "apps": len(dump["apps"]), "memberships": sum(len(g["members"]) for g in dump["groups"]),
        "app_user_bindings": sum(len(a["users"]) for a in dump["apps"]),
        "app_group_bindings": sum(len(a["groups"]) for a in dump["apps"]),
    }


def apply_change(url: str, api_key: str, dump: dict, share: float = 0.01, seed: int = 1) -> dict[str, int]:
    """Change ``share`` of the users (n) through the real write API: n//4 users added (each into one group),
    n//4 suspended, n//4 deleted, and the rest moved from one of their groups to another (one membership
    removed, one added). Deterministic for a given dump and seed."""
    rng = random.Random(seed)
    n = max(4, round(len(dump["users"]) * share))
    quarter = n // 4
    users = sorted(dump["users"], key=lambda u: u["_id"])
    active = [u["_id"] for u in users if u.get("state") == "ACTIVATED" and not u.get("suspended")]
    groups = [g["id"] for g in dump["groups"]]
    member_of: dict[str, list[str]] = {}
    for g in dump["groups"]:
        for uid in g["members"]:
            member_of.setdefault(uid, []).append(g["id"])
    picked = rng.sample(active, min(len(active), n - quarter))  # the added quarter are new users
    suspend, delete, move = picked[:quarter], picked[quarter:2 * quarter], picked[2 * quarter:]
    counts = {"users_added": 0, "users_suspended": 0, "users_deleted": 0, "memberships_removed": 0,
              "memberships_added": 0, "requests": 0}
    with httpx.Client(base_url=url, headers={"x-api-key": api_key}, timeout=30) as client:
        def call(method: str, path: str, **kwargs) -> httpx.Response:
            response = client.request(method, path, **kwargs)
            counts["requests"] += 1
            if response.status_code >= 300:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:200]}")
            return response

        for i in range(quarter):
            name = f"bench.added{seed}.{i}"
            user = call("POST", "/api/systemusers", json={"username": name, "email": f"{name}@bench.test",
                                                          "state": "ACTIVATED", "firstname": "Bench",
                                                          "lastname": f"Added {i}"}).json()
            counts["users_added"] += 1
            call("POST", f"/api/v2/usergroups/{rng.choice(groups)}/members",
                 json={"op": "add", "type": "user", "id": user["_id"]})
            counts["memberships_added"] += 1
        for uid in suspend:
            call("PUT", f"/api/systemusers/{uid}", json={"suspended": True, "state": "SUSPENDED"})
            counts["users_suspended"] += 1
        for uid in delete:
            call("DELETE", f"/api/systemusers/{uid}")
            counts["users_deleted"] += 1
        for uid in move:
            current = member_of.get(uid, [])
            if current:
                call("POST", f"/api/v2/usergroups/{rng.choice(current)}/members",
                     json={"op": "remove", "type": "user", "id": uid})
                counts["memberships_removed"] += 1
            candidates = [g for g in rng.sample(groups, min(len(groups), 5)) if g not in current]
            if candidates:
                call("POST", f"/api/v2/usergroups/{candidates[0]}/members",
                     json={"op": "add", "type": "user", "id": uid})
                counts["memberships_added"] += 1
    counts["users_changed"] = counts["users_added"] + counts["users_suspended"] + counts["users_deleted"] + len(move)
    return counts
