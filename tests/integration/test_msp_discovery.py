"""MSP discovery against the database (SQLite and PostgreSQL): stable names, renames, organisations going and
coming back, filters applied at merge time; and against the simulator over HTTP."""

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from config.settings import load_settings
from connector.organizations import Organization
from models.tables import Connector, MspListing, MspOrganization, utcnow
from msp.discovery import apply_listing
from msp.views import discovered_connectors

CONFIG = """
[[connectors]]
name = "acme-globex"
api_key_env = "GLOBEX_KEY"

[[msp]]
name = "acme"
api_key_env = "ACME_MSP_KEY"
exclude = ["*sandbox*"]
remove_after = "30m"
"""

GLOBEX = Organization("a00000000000000000000001", "Globex")
INITECH = Organization("a00000000000000000000002", "Initech")
SANDBOX = Organization("a00000000000000000000003", "Initech Sandbox")


@pytest.fixture
def settings(tmp_path):
    path = tmp_path / "jumpsync.toml"
    path.write_text(CONFIG)
    return load_settings(path)


def names(engine, settings):
    return [c.name for c in discovered_connectors(engine, settings.file)]


def listing(engine, settings, organizations, now):
    msp = settings.file.msp_table("acme")
    return apply_listing(engine, msp, organizations, {c.name for c in settings.file.connectors}, now=now)


def test_organisations_get_stable_names_that_survive_renames_and_absences(engine, settings):
    t0 = utcnow()
    with Session(engine) as session:  # a connector an earlier sync registered: its name is never handed out
        session.add(Connector(name="acme-initech", base_url="https://console.jumpcloud.com"))
        session.commit()
    first = listing(engine, settings, [GLOBEX, INITECH, SANDBOX], t0)
    # "acme-globex" is a [[connectors]] name and "acme-initech" a registered one: both get the id's tail
    assert sorted(first.new) == ["acme-globex-000001", "acme-initech-000002", "acme-initech-sandbox"]
    assert names(engine, settings) == ["acme-globex-000001", "acme-initech-000002"]  # the sandbox is excluded

    renamed = listing(engine, settings, [GLOBEX, Organization(INITECH.id, "Initech Holdings"), SANDBOX],
                      t0 + timedelta(minutes=10))
    assert renamed.renamed == ["acme-initech-000002"] and renamed.new == []
    assert names(engine, settings) == ["acme-globex-000001", "acme-initech-000002"]

    gone = listing(engine, settings, [GLOBEX, SANDBOX], t0 + timedelta(minutes=20))
    assert gone.missing == ["acme-initech-000002"] and gone.removed == []
    assert "acme-initech-000002" in names(engine, settings)  # missing once: keeps running
    still = listing(engine, settings, [GLOBEX, SANDBOX], t0 + timedelta(minutes=49))
    assert still.missing == ["acme-initech-000002"] and still.removed == []
    removed = listing(engine, settings, [GLOBEX, SANDBOX], t0 + timedelta(minutes=50))
    assert removed.removed == ["acme-initech-000002"]
    assert names(engine, settings) == ["acme-globex-000001"]
    again = listing(engine, settings, [GLOBEX, SANDBOX], t0 + timedelta(minutes=60))
    assert again.removed == [] and again.missing == []  # removed once, not again

    back = listing(engine, settings, [GLOBEX, INITECH, SANDBOX], t0 + timedelta(minutes=70))
    assert back.returned == ["acme-initech-000002"] and back.new == []
    assert names(engine, settings) == ["acme-globex-000001", "acme-initech-000002"]
    with Session(engine) as session:
        row = session.exec(select(MspOrganization).where(MspOrganization.org_id == INITECH.id)).one()
        assert (row.display_name, row.missing_since, row.removed_at) == ("Initech", None, None)
        listed = session.get(MspListing, "acme")
        assert (listed.outcome, listed.organizations) == ("ok", 3)


def test_a_changed_filter_takes_effect_without_a_listing(engine, settings, tmp_path):
    listing(engine, settings, [GLOBEX, INITECH, SANDBOX], utcnow())
    path = tmp_path / "jumpsync.toml"
    path.write_text(CONFIG.replace('exclude = ["*sandbox*"]', 'include = ["initech*"]'))
    assert names(engine, load_settings(path)) == ["acme-initech", "acme-initech-sandbox"]
    path.write_text(CONFIG[:CONFIG.index("[[msp]]")])  # the table removed: none of its connectors
    assert names(engine, load_settings(path)) == []


@pytest.fixture
def msp_simulator():
    """A multi-tenant simulator with 105 tiny organisations: the listing takes two pages of 100."""
    from simulator.cli import build_state
    from simulator.server import SimulatorServer
    from tests.support.constants import TEST_API_KEY
    from tests.support.simulators import SimulatorHandle

    state = build_state(api_key=TEST_API_KEY, seed=500, users=2, admins=1, groups=1, apps=1, orgs=105)
    server = SimulatorServer(state).start()
    yield SimulatorHandle(server, state, TEST_API_KEY, next(iter(state.orgs)))
    server.stop()


def test_discover_lists_every_page_over_http_and_a_failed_listing_changes_nothing(engine, msp_simulator, tmp_path,
                                                                                   monkeypatch, redis_url):
    from models.queries import metrics_snapshot
    from msp.discovery import discover
    from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV

    sim = msp_simulator
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)
    monkeypatch.setenv("JUMPSYNC_BROKER_URL", redis_url)  # the key's budget (shared_max_in_flight 16 by default)
    path = tmp_path / "jumpsync.toml"
    path.write_text(f'[[msp]]\nname = "acme"\nbase_url = "{sim.url}"\napi_key_env = "{TEST_KEY_ENV}"\n')
    settings = load_settings(path)
    t0 = utcnow()

    found = discover(engine, settings, "acme", now=t0)
    assert found.error is None
    assert (found.outcome, found.listed, len(found.new), found.requests) == ("ok", 105, 105, 2)
    assert sim.stats()["by_route"] == {"GET /api/organizations": 2}
    connectors = discovered_connectors(engine, settings.file)
    assert {c.org_id for c in connectors} == set(sim.orgs()["orgs"])
    assert len({c.name for c in connectors}) == 105

    gone = sim.orgs()["orgs"][0]
    sim.remove_org(gone)
    assert discover(engine, settings, "acme", now=t0 + timedelta(minutes=1)).missing != []
    removed = discover(engine, settings, "acme", now=t0 + timedelta(minutes=31))
    assert len(removed.removed) == 1 and removed.listed == 104
    assert gone not in {c.org_id for c in discovered_connectors(engine, settings.file)}
    snapshot = metrics_snapshot(engine)
    assert snapshot.msp.organizations == {("acme", "listed"): 104, ("acme", "removed"): 1}
    assert snapshot.msp.listings["acme"][0] is True

    sim.sim("PUT", "/_sim/api-key", json={"api_key": None})  # the key is revoked
    failed = discover(engine, settings, "acme", now=t0 + timedelta(minutes=90))
    assert failed.outcome == "failed" and failed.error.startswith("AuthError")
    assert TEST_API_KEY not in failed.error
    assert len(discovered_connectors(engine, settings.file)) == 104  # nothing missing, nothing removed
    snapshot = metrics_snapshot(engine)
    assert snapshot.msp.organizations == {("acme", "listed"): 104, ("acme", "removed"): 1}
    assert snapshot.msp.listings["acme"][0] is False


def test_an_organisation_two_msp_tables_reach_is_synced_once_and_shown_shadowed(engine, tmp_path):
    from msp.views import organizations

    path = tmp_path / "jumpsync.toml"
    path.write_text(CONFIG + '\n[[msp]]\nname = "beta"\napi_key_env = "BETA_MSP_KEY"\n')
    settings = load_settings(path)
    listing(engine, settings, [INITECH], utcnow())
    apply_listing(engine, settings.file.msp_table("beta"), [INITECH, SANDBOX], set())
    merged = settings.with_discovered(discovered_connectors(engine, settings.file))
    assert [c.name for c in merged.discovered] == ["acme-initech", "beta-initech-sandbox"]  # the first table's
    beta = {o["connector"]: o for o in organizations(engine, settings.file)[1]["organizations"]}
    assert beta["beta-initech"]["state"] == "shadowed"
    assert beta["beta-initech"]["shadowed_by"] == "the organisation is synced by connector 'acme-initech' of msp 'acme'"


def test_listing_records_without_a_valid_id_are_skipped():
    from connector.organizations import map_organization

    assert map_organization({"_id": "org-0001-not-an-objecti", "displayName": "Odd"}) is None
    assert map_organization({"_id": "a" * 32, "displayName": "Long"}) is None
    assert map_organization({"_id": "A" * 24, "displayName": "Upper"}) == Organization("a" * 24, "Upper")
