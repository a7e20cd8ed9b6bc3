"""The ``[[msp]]`` table: validation naming the key, the organisation filters, the connectors it makes, their
stable names, and how discovered connectors join the file's."""

import pytest

from config.settings import ConfigError, load_settings
from connector.organizations import Organization, map_organization
from msp.names import connector_name, slug

MSP = """
[[connectors]]
name = "hq"
api_key_env = "HQ_KEY"
org_id = "aaaaaaaaaaaaaaaaaaaaaaaa"

[[msp]]
name = "acme"
api_key_env = "ACME_MSP_KEY"
include = ["*"]
exclude = ["*sandbox*", "bbbbbbbbbbbbbbbbbbbbbbbb"]
discover_interval = "5m"
shared_max_in_flight = 6
rate_limit = 20

[msp.connector]
interval = "2h"
resource_types = ["user", "group"]
events = false

[msp.connector.provisioning]
dry_run = true
"""


def load(tmp_path, text):
    path = tmp_path / "jumpsync.toml"
    path.write_text(text)
    return load_settings(path)


def test_an_msp_table_loads_and_makes_connectors_with_its_key_limits_and_options(tmp_path):
    settings = load(tmp_path, MSP)
    msp = settings.file.msp_table("acme")
    assert msp.discover_interval == "5m" and msp.remove_after == "30m"
    org = msp.connector_for("acme-globex", "cccccccccccccccccccccccc")
    assert (org.name, org.org_id, org.msp) == ("acme-globex", "cccccccccccccccccccccccc", "acme")
    assert (org.api_key_env, org.base_url) == ("ACME_MSP_KEY", "https://console.jumpcloud.com")
    assert (org.shared_max_in_flight, org.rate_limit) == (6, 20)
    assert org.resource_types == ("user", "group") and org.events is False and org.interval == "2h"
    assert org.provisioning.dry_run is True
    # every organisation of the key counts against one budget; a connector of the file has its own
    assert org.budget_name == "msp:acme"
    assert settings.connector("hq").budget_name == "hq"


def test_include_and_exclude_match_the_id_or_the_name_case_insensitively(tmp_path):
    msp = load(tmp_path, MSP).file.msp_table("acme")
    assert msp.takes("cccccccccccccccccccccccc", "Globex")
    assert not msp.takes("cccccccccccccccccccccccc", "Globex SANDBOX")
    assert not msp.takes("bbbbbbbbbbbbbbbbbbbbbbbb", "Initech")
    only = load(tmp_path, MSP.replace('include = ["*"]', 'include = ["glob*", "dddd*"]')).file.msp_table("acme")
    assert only.takes("cccccccccccccccccccccccc", "globex")
    assert only.takes("dddddddddddddddddddddddd", "Anything")
    assert not only.takes("cccccccccccccccccccccccc", "Initech")


@pytest.mark.parametrize("change, message", [
    (('name = "acme"', 'name = "Acme Corp"'), "msp[0].name: 'Acme Corp' is not a name"),
    (('name = "acme"', 'name = "a-very-long-msp-name-indeed"'), "msp[0].name: 'a-very-long-msp-name-indeed' is longer than 24"),
    (('api_key_env = "ACME_MSP_KEY"', ''), "msp[0]: set exactly one of api_key_env and api_key_file"),
    (('interval = "2h"', 'interval = "2 hours"'), "msp[0].connector.interval: '2 hours' is not a duration"),
    (('events = false', 'org_id = "cccccccccccccccccccccccc"'), "msp[0].connector.org_id: unknown key"),
    (('discover_interval = "5m"', 'discover_interval = "1s"'), "msp[0].discover_interval: '1s' is shorter"),
    (('exclude = ["*sandbox*", "bbbbbbbbbbbbbbbbbbbbbbbb"]', 'exclude = [" "]'), "msp[0].exclude: a pattern is empty"),
    (('rate_limit = 20', 'rate_limit = 0'), "msp[0].rate_limit"),
    (('[msp.connector]', '[msp.connectorz]'), "msp[0].connectorz: unknown key"),
])
def test_a_bad_msp_table_is_refused_with_the_file_and_key_named(tmp_path, change, message):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, MSP.replace(*change))
    assert str(tmp_path / "jumpsync.toml") in str(error.value)
    assert message in str(error.value)


def test_two_msp_tables_of_one_name_are_refused(tmp_path):
    second = MSP[MSP.index("[[msp]]"):MSP.index("[msp.connector]")]
    with pytest.raises(ConfigError, match=r"msp\[1\]\.name: 'acme' is used twice"):
        load(tmp_path, MSP + second)


def test_discovered_connectors_join_the_files_and_the_file_wins_for_an_org_it_names(tmp_path):
    settings = load(tmp_path, MSP)
    msp = settings.file.msp_table("acme")
    merged = settings.with_discovered([
        msp.connector_for("acme-globex", "cccccccccccccccccccccccc"),
        msp.connector_for("acme-hq", "aaaaaaaaaaaaaaaaaaaaaaaa"),   # the org of [[connectors]] "hq"
        msp.connector_for("hq", "dddddddddddddddddddddddd"),        # a name the file uses
    ])
    assert [c.name for c in merged.connectors] == ["hq", "acme-globex"]
    assert merged.connector("acme-globex").org_id == "cccccccccccccccccccccccc"
    with pytest.raises(ConfigError, match="unknown connector 'acme-hq'"):
        merged.connector("acme-hq")
    assert [c.name for c in settings.connectors] == ["hq"]  # the file's settings are not changed


def test_connector_names_are_slugs_of_the_org_name_and_never_clash():
    org = Organization("5f1e2d3c4b5a697887766554", "Globex Corporation (EU) — Zürich")
    assert slug(org.display_name) == "globex-corporation-eu-zurich"
    assert connector_name("acme", org, set()) == "acme-globex-corporation-eu-zurich"
    taken = {"acme-globex-corporation-eu-zurich"}
    assert connector_name("acme", org, taken) == "acme-globex-corporation-eu-zurich-766554"
    taken.add("acme-globex-corporation-eu-zurich-766554")
    assert connector_name("acme", org, taken) == "acme-5f1e2d3c4b5a697887766554"
    long = Organization("5f1e2d3c4b5a697887766554", "x" * 200)
    assert len(connector_name("acme", long, set())) == 63
    assert len(connector_name("acme", long, {connector_name("acme", long, set())})) == 63
    assert connector_name("acme", Organization("5f1e2d3c4b5a697887766554", "日本"), set()) == \
        "acme-5f1e2d3c4b5a697887766554"


def test_an_organisation_record_needs_an_id_and_names_itself_by_it_when_blank():
    assert map_organization({"_id": "5F1E2D3C4B5A697887766554", "displayName": " Globex "}) == \
        Organization("5f1e2d3c4b5a697887766554", "Globex")
    assert map_organization({"_id": "5f1e2d3c4b5a697887766554", "displayName": ""}) == \
        Organization("5f1e2d3c4b5a697887766554", "5f1e2d3c4b5a697887766554")
    assert map_organization({"displayName": "no id"}) is None


def test_a_worker_refuses_to_start_when_the_msp_key_cannot_be_read(tmp_path, monkeypatch):
    from config.settings import check_api_keys

    monkeypatch.setenv("HQ_KEY", "k" * 20)
    monkeypatch.delenv("ACME_MSP_KEY", raising=False)
    with pytest.raises(ConfigError) as error:
        check_api_keys(load(tmp_path, MSP))
    assert str(error.value) == (f"{tmp_path / 'jumpsync.toml'}: msp[0] msp 'acme': environment variable "
                                "ACME_MSP_KEY is not set")
    monkeypatch.setenv("ACME_MSP_KEY", "k" * 20)
    check_api_keys(load(tmp_path, MSP))
