"""A simulator for a test: started in a thread, driven over real HTTP (the real write API and /_sim)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from simulator.admin import SimulatorAdmin
from simulator.generator import TenantSpec, generate_tenant
from simulator.server import SimulatorServer
from simulator.state import SimulatorState

SMALL = dict(seed=7, users=120, admins=8, groups=12, apps=8)


@dataclass
class SimulatorHandle(SimulatorAdmin):
    admin_timeout = 30.0

    server: SimulatorServer
    state: SimulatorState
    api_key: str
    org_id: str

    @classmethod
    def start(cls, spec: TenantSpec | None = None, *, api_key: str) -> SimulatorHandle:
        tenant = generate_tenant(spec or TenantSpec(**SMALL))
        state = SimulatorState(orgs={tenant.org_id: tenant}, api_key=api_key)
        server = SimulatorServer(state)
        server.start()
        return cls(server, state, api_key, tenant.org_id)

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()

    # --- the real write API ------------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = httpx.request(method, self.url + path, headers={"x-api-key": self.api_key}, timeout=30,
                                 **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return response

    def create_user(self, username: str, **fields) -> dict:
        body = {"username": username, "email": f"{username}@example.org", "state": "ACTIVATED", **fields}
        return self.api("POST", "/api/systemusers", json=body).json()

    def delete_user(self, user_id: str) -> None:
        self.api("DELETE", f"/api/systemusers/{user_id}")

    def suspend_user(self, user_id: str) -> None:
        self.api("PUT", f"/api/systemusers/{user_id}", json={"suspended": True, "state": "SUSPENDED"})

    def group_member(self, group_id: str, user_id: str, op: str) -> None:
        self.api("POST", f"/api/v2/usergroups/{group_id}/members", json={"op": op, "type": "user", "id": user_id})

    def app_binding(self, app_id: str, kind: str, target_id: str, op: str) -> None:
        self.api("POST", f"/api/v2/applications/{app_id}/associations", json={"op": op, "type": kind, "id": target_id})

    def update_user(self, user_id: str, **fields) -> dict:
        return self.api("PUT", f"/api/systemusers/{user_id}", json=fields).json()

    def create_group(self, name: str) -> dict:
        return self.api("POST", "/api/v2/usergroups", json={"name": name}).json()

    def rename_group(self, group_id: str, name: str) -> None:
        """A v2 PUT replaces the group: send it whole, with the new name, as a client of JumpCloud must."""
        group = self.api("GET", f"/api/v2/usergroups/{group_id}").json()
        self.api("PUT", f"/api/v2/usergroups/{group_id}", json={**group, "name": name})

    def delete_group(self, group_id: str) -> None:
        self.api("DELETE", f"/api/v2/usergroups/{group_id}")

    def set_admin_role(self, admin_id: str, role: str) -> None:
        self.api("PUT", f"/api/users/{admin_id}", json={"roleName": role})

    def create_admin(self, email: str, role: str = "Manager") -> dict:
        return self.sim("POST", "/_sim/admins", json={"email": email, "roleName": role}).json()

    def delete_admin(self, admin_id: str) -> None:
        self.sim("DELETE", f"/_sim/admins/{admin_id}")

    def create_app(self, name: str) -> dict:
        return self.sim("POST", "/_sim/applications", json={"name": name}).json()

    def delete_app(self, app_id: str) -> None:
        self.sim("DELETE", f"/_sim/applications/{app_id}")
