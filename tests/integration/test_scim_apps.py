"""Applications that JumpCloud provisions users into (Identity Management, SCIM): read from the v2 application
objects by the full sync and the incremental refresh, kept on the app's profile, and used by the report and the
export; against the simulator over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from access import export as ex
from access import report as rp
from models import queries
from pipeline import incremental
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV
from tests.support.direct_sync import NAME, make_settings, run_sync


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


def expected_provisioning(app: dict) -> str:
    provision = app.get("provision")
    return provision["type"] if isinstance(provision, dict) else "none"


def apps(engine) -> dict[str, dict]:
    return {r.id: r.profile for r in queries.resources(engine, NAME, "app", include_deleted=False)}


def test_a_full_sync_keeps_each_apps_provisioning(engine, db_url, simulator):
    sim = simulator()
    assert run_sync(make_settings(db_url, sim.url), engine).status == "succeeded"
    dump = sim.dump()
    profiles = apps(engine)
    assert {a["_id"]: expected_provisioning(a) for a in dump["apps"]} == {
        aid: profile["provisioning"] for aid, profile in profiles.items()}
    assert {"scim", "none"} <= {p["provisioning"] for p in profiles.values()}  # the tenant has both
    for app in dump["apps"]:
        if isinstance(app.get("provision"), dict):
            assert profiles[app["_id"]]["provisioning_groups"] is app["provision"]["groups_supported"]


def test_a_refused_v2_listing_leaves_provisioning_unknown_and_the_sync_goes_on(engine, db_url, simulator):
    sim = simulator()
    sim.set_faults({"rules": [{"path": "^/api/v2/applications$", "status": 403}]})
    assert run_sync(make_settings(db_url, sim.url), engine).status == "succeeded"
    assert all("provisioning" not in profile for profile in apps(engine).values())
    summary = rp.report(engine, NAME)["summary"]
    assert summary["provisioned_app_without_users"] == summary["app_access_not_provisioned"] == 0
    assert {r["resource_provisioning"] for r in ex.export(engine, NAME)} == {None}


def test_report_export_and_refresh_follow_provisioning(engine, db_url, simulator):
    sim = simulator()
    settings = make_settings(db_url, sim.url)
    unused = sim.sim("POST", "/_sim/applications", json={"name": "zendesk", "provision": {"type": "scim"}}).json()
    assert run_sync(settings, engine).status == "succeeded"
    result = rp.report(engine, NAME)
    found = {(f["kind"], f["subject"]["id"]) for f in result["findings"]}
    assert ("provisioned_app_without_users", unused["_id"]) in found
    dump = sim.dump()
    used_none = [a for a in dump["apps"] if expected_provisioning(a) == "none" and (a["users"] or a["groups"])]
    assert used_none and ("app_access_not_provisioned", used_none[0]["_id"]) in found
    assert all(f["subject"]["type"] == "app" for f in result["findings"]
               if f["kind"] in ("provisioned_app_without_users", "app_access_not_provisioned"))

    # Identity Management turned on for an app in use: Directory Insights says integration_activate.
    target = used_none[0]["_id"]
    sim.sim("PUT", f"/_sim/applications/{target}/provision", json={"provision": {"type": "scim",
                                                                                  "groups_supported": False}})
    refreshed = incremental.refresh(engine, settings.connector(NAME))
    # two reads an app (its v1 and v2 records); zendesk's events, just before the full sync, are read again once
    assert refreshed.outcome == "applied" and refreshed.reads == refreshed.read_requests == 4
    assert apps(engine)[target] == {**apps(engine)[target], "provisioning": "scim", "provisioning_groups": False}
    assert ("app_access_not_provisioned", target) not in {
        (f["kind"], f["subject"]["id"]) for f in rp.report(engine, NAME)["findings"]}
    assert {r["resource_provisioning"] for r in ex.export(engine, NAME) if r["resource_id"] == target} == {"scim"}
