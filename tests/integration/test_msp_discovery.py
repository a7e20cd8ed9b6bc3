"""MSP discovery against the database (SQLite and PostgreSQL): stable names, renames, organisations going and
coming back, filters applied at merge time; and against the simulator over HTTP."""

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from config.settings import load_settings
from connector.organizations import Organization
from models.tables import Connector, MspListing, MspOrganization, utcnow
from pipeline.discovery import apply_listing, discovered_connectors

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
    assert renamed.renamed == ("acme-initech-000002",) and renamed.new == ()
    assert names(engine, settings) == ["acme-globex-000001", "acme-initech-000002"]

    gone = listing(engine, settings, [GLOBEX, SANDBOX], t0 + timedelta(minutes=20))
    assert gone.missing == ("acme-initech-000002",) and gone.removed == ()
    assert "acme-initech-000002" in names(engine, settings)  # missing once: keeps running
    still = listing(engine, settings, [GLOBEX, SANDBOX], t0 + timedelta(minutes=49))
    assert still.missing == ("acme-initech-000002",) and still.removed == ()
    removed = listing(engine, settings, [GLOBEX, SANDBOX], t0 + timedelta(minutes=50))
    assert removed.removed == ("acme-initech-000002",)
    assert names(engine, settings) == ["acme-globex-000001"]
    again = listing(engine, settings, [GLOBEX, SANDBOX], t0 + timedelta(minutes=60))
    assert again.removed == () and again.missing == ()  # removed once, not again

    back = listing(engine, settings, [GLOBEX, INITECH, SANDBOX], t0 + timedelta(minutes=70))
    assert back.returned == ("acme-initech-000002",) and back.new == ()
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
