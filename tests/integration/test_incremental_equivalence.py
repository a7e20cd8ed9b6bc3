"""Equivalence: after any sequence of writes through the simulator's write API, a database kept by incremental
refreshes equals one a full sync of the same tenant wrote, resource for resource and grant for grant (``via``
and the owning part included; apps' provisioning too). Hypothesis chooses the writes (a stateful test); each
refresh is compared.

Runs on SQLite (a fresh database per example); PostgreSQL runs the fixed scenarios of test_incremental.py.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from config.settings import SyncSettings
from pipeline import incremental
from simulator.generator import TenantSpec
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV
from tests.support.direct_sync import NAME, make_settings, run_sync
from tests.support.incremental import assert_same_state, scratch_sqlite
from tests.support.simulators import SimulatorHandle

pytestmark = [pytest.mark.integration, pytest.mark.long]

pick = st.integers(min_value=0, max_value=10**6)
ROLES = ("Administrator", "Manager", "Help Desk", "Read Only", "Command Runner")
_names = itertools.count()


class Writes(RuleBasedStateMachine):
    """One simulator for all examples (its tenant keeps changing, which is fine: every example starts with a full
    sync into a fresh database); per example, a database kept by refreshes only."""

    sim: SimulatorHandle
    directory: Path

    @initialize()
    def full_sync(self):
        self.engine = scratch_sqlite(self.directory, f"incremental-{next(_names)}.db")
        # No deletion valve: a random sequence may delete most of a small tenant's apps between two syncs.
        self.settings = make_settings(str(self.engine.url), self.sim.url, SyncSettings(max_delete_share=1.0))
        assert run_sync(self.settings, self.engine).status == "succeeded"

    def teardown(self):
        """Every example ends with a refresh and the comparison, whatever the rules did before."""
        try:
            if hasattr(self, "engine"):
                self.refresh_and_compare()
        finally:
            if hasattr(self, "engine"):
                self.engine.dispose()

    # --- what the tenant holds now ----------------------------------------------------------------------------
    def _tenant(self):
        return self.sim.dump()

    @staticmethod
    def _one(items, index):
        return items[index % len(items)] if items else None

    # --- writes -----------------------------------------------------------------------------------------------
    @rule()
    def create_user(self):
        number = next(_names)
        self.sim.create_user(f"hyp{number}", firstname="Hyp", lastname=str(number))

    @rule(i=pick)
    def delete_user(self, i):
        users = self._tenant()["users"]
        if len(users) > 5:
            self.sim.delete_user(self._one(users, i)["_id"])

    @rule(i=pick, suspended=st.booleans())
    def suspend_or_unsuspend(self, i, suspended):
        user = self._one(self._tenant()["users"], i)
        self.sim.update_user(user["_id"], suspended=suspended, state="SUSPENDED" if suspended else "ACTIVATED")

    @rule(i=pick)
    def change_email(self, i):
        user = self._one(self._tenant()["users"], i)
        self.sim.update_user(user["_id"], email=f"moved{next(_names)}@example.org", department="Moved")

    @rule(i=pick, j=pick)
    def toggle_membership(self, i, j):
        tenant = self._tenant()
        group, user = self._one(tenant["groups"], i), self._one(tenant["users"], j)
        if group and user:
            self.sim.group_member(group["id"], user["_id"], "remove" if user["_id"] in group["members"] else "add")

    @rule(i=pick, j=pick, to_group=st.booleans())
    def toggle_app_binding(self, i, j, to_group):
        tenant = self._tenant()
        app = self._one(tenant["apps"], i)
        target = self._one(tenant["groups"] if to_group else tenant["users"], j)
        if app and target:
            kind, key, bound = (("user_group", "id", app["groups"]) if to_group else ("user", "_id", app["users"]))
            self.sim.app_binding(app["_id"], kind, target[key], "remove" if target[key] in bound else "add")

    @rule()
    def create_group(self):
        self.sim.create_group(f"Team {next(_names)}")

    @rule(i=pick)
    def delete_group(self, i):
        groups = self._tenant()["groups"]
        if len(groups) > 2:
            self.sim.delete_group(self._one(groups, i)["id"])

    @rule(i=pick)
    def rename_group(self, i):
        group = self._one(self._tenant()["groups"], i)
        if group:
            self.sim.rename_group(group["id"], f"Renamed {next(_names)}")

    @rule()
    def create_app(self):
        self.sim.create_app(f"app{next(_names)}")

    @rule(i=pick)
    def delete_app(self, i):
        apps = self._tenant()["apps"]
        if len(apps) > 2:
            self.sim.delete_app(self._one(apps, i)["_id"])

    @rule(i=pick, scim=st.booleans())
    def toggle_provisioning(self, i, scim):
        app = self._one(self._tenant()["apps"], i)
        if app:
            self.sim.sim("PUT", f"/_sim/applications/{app['_id']}/provision",
                         json={"provision": {"type": "scim", "groups_supported": True} if scim else None})

    @rule(i=pick, role=st.sampled_from(ROLES + ("Auditor",)))
    def change_admin_role(self, i, role):
        admin = self._one(self._tenant()["admins"], i)
        if admin:
            if role == "Auditor" and not any(r["name"] == "Auditor" for r in self._tenant()["roles"]):
                self.sim.sim("POST", "/_sim/roles", json={"name": role})
            self.sim.set_admin_role(admin["_id"], role)

    @rule(i=pick, create=st.booleans())
    def create_or_delete_admin(self, i, create):
        admins = self._tenant()["admins"]
        if create or len(admins) < 2:
            self.sim.create_admin(f"admin{next(_names)}@example.org", role="Read Only")
        else:
            self.sim.delete_admin(self._one(admins, i)["_id"])

    # --- the property -----------------------------------------------------------------------------------------
    @rule()
    def refresh_and_compare(self):
        result = incremental.refresh(self.engine, self.settings.connector(NAME))
        assert result.outcome in ("quiet", "applied", "full_sync"), result
        if result.full_sync:  # more to read back than a full sync costs: the task sends one, so do we
            assert run_sync(self.settings, self.engine).status == "succeeded"
        full = scratch_sqlite(self.directory, f"full-{next(_names)}.db")
        try:
            assert run_sync(make_settings(str(full.url), self.sim.url), full).status == "succeeded"
            assert_same_state(self.engine, full)
        finally:
            full.dispose()


@pytest.fixture
def writes_machine(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)
    sim = SimulatorHandle.start(TenantSpec(seed=11, users=25, admins=4, groups=5, apps=4), api_key=TEST_API_KEY)
    with tempfile.TemporaryDirectory(prefix="jumpsync-hyp-") as directory:
        Writes.sim, Writes.directory = sim, Path(directory)
        try:
            yield Writes
        finally:
            sim.stop()


def test_incremental_refreshes_equal_a_full_sync(writes_machine):
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(writes_machine, settings=settings(
        max_examples=15, stateful_step_count=20, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
