"""Config file validation: every problem names the file and the key."""

import os
from pathlib import Path

import pytest

from config.settings import ConfigError, SettingsCache, load_settings, parse_duration

GOOD = """
database_url = "sqlite:///x.db"
[[connectors]]
name = "acme"
base_url = "https://console.eu.jumpcloud.com"
api_key_env = "ACME_KEY"
interval = "15m"
[[connectors]]
name = "beta"
api_key_file = "/run/secrets/beta"
org_id = "5f1e2d3c4b5a697887766554"
cron = "*/30 * * * *"
resource_types = ["user", "group"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jumpsync.toml"
    path.write_text(text)
    return path


def test_good_config_loads_with_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("JUMPSYNC_DATABASE_URL", raising=False)
    monkeypatch.setenv("JUMPSYNC_BROKER_URL", "redis://elsewhere:6379/1")
    settings = load_settings(write(tmp_path, GOOD))
    assert [c.name for c in settings.connectors] == ["acme", "beta"]
    assert settings.database_url == "sqlite:///x.db"
    assert settings.broker_url == "redis://elsewhere:6379/1"  # the environment wins over the file
    acme, beta = settings.connectors
    assert parse_duration(acme.interval).total_seconds() == 900
    assert acme.resource_types == ("user", "admin", "group", "app", "role")
    assert beta.resource_types == ("user", "group")
    assert beta.schedule.minute == set(range(0, 60, 30))


@pytest.mark.parametrize("snippet, expected", [
    ('name = "acme"\napi_key_env = "K"\ncolour = "red"', "connectors[0].colour: unknown key"),
    ('name = "acme"\napi_key_env = "K"\ninterval = "15 minutes"', "connectors[0].interval: '15 minutes' is not a duration"),
    ('name = "acme"\napi_key_env = "K"\ncron = "61 * * * *"', "connectors[0].cron: '61 * * * *' is not a valid cron"),
    ('name = "acme"\napi_key_env = "K"\nbase_url = "http://jumpcloud.example.com"', "connectors[0].base_url: 'http://jumpcloud.example.com': plain http"),
    ('name = "acme"\napi_key_env = "K"\nbase_url = "ftp://x"', "connectors[0].base_url: 'ftp://x' is not an http(s) URL"),
    ('name = "acme"', "connectors[0]: set exactly one of api_key_env and api_key_file"),
    ('name = "Acme Corp"\napi_key_env = "K"', "connectors[0].name: 'Acme Corp' is not a connector name"),
    ('name = "acme"\napi_key_env = "K"\norg_id = "xyz"', "connectors[0].org_id: 'xyz' is not a JumpCloud organisation id"),
    ('name = "acme"\napi_key_env = "K"\nresource_types = ["role"]', "connectors[0].resource_types: 'role' needs 'admin'"),
    ('name = "acme"\napi_key_env = "K"\nresource_types = ["users"]', "connectors[0].resource_types[0]: Input should be"),
    ('name = "acme"\napi_key_env = "K"\ninterval = "5m"\ncron = "* * * * *"', "set interval or cron, not both"),
])
def test_bad_connector_is_rejected_naming_file_and_key(tmp_path, snippet, expected):
    path = write(tmp_path, "[[connectors]]\n" + snippet + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_duplicate_names_and_bad_toml(tmp_path):
    path = write(tmp_path, '[[connectors]]\nname="a"\napi_key_env="K"\n[[connectors]]\nname="a"\napi_key_env="K"\n')
    with pytest.raises(ConfigError, match="'a' is used twice"):
        load_settings(path)
    path.write_text("[[connectors]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)


def test_a_config_file_that_is_not_utf8_is_a_config_error_naming_the_byte(tmp_path):
    path = tmp_path / "jumpsync.toml"
    path.write_bytes('[[connectors]]\nname = "acme"\n# caf\u00e9\napi_key_env = "K"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == (f"{path}: not UTF-8: byte 0xe9 at line 3, column 6 (TOML files are UTF-8: save it "
                               "as UTF-8)")


def test_a_key_file_that_is_not_utf8_is_refused_without_its_bytes(tmp_path, monkeypatch):
    key_file = tmp_path / "key"
    key_file.write_bytes(b"secret-\xe9-key")
    key_file.chmod(0o600)
    path = write(tmp_path, f'[[connectors]]\nname = "acme"\napi_key_file = "{key_file}"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path).connector("acme").api_key()
    assert "is not UTF-8 text" in str(info.value) and "secret" not in str(info.value)


def test_explicit_missing_file_is_an_error_default_is_empty(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JUMPSYNC_CONFIG", raising=False)
    assert load_settings().connectors == ()


def test_api_key_from_env_and_file_errors_never_show_the_key(tmp_path, monkeypatch):
    secret = tmp_path / "key"
    secret.write_text("sekrit-123\n")
    os.chmod(secret, 0o600)
    path = write(tmp_path, f'[[connectors]]\nname="a"\napi_key_file="{secret}"\n'
                           '[[connectors]]\nname="b"\napi_key_env="B_KEY"\n')
    a, b = load_settings(path).connectors
    assert a.api_key() == "sekrit-123"
    os.chmod(secret, 0o644)
    with pytest.raises(ConfigError, match="readable by others") as info:
        a.api_key()
    assert "sekrit" not in str(info.value)
    monkeypatch.delenv("B_KEY", raising=False)
    with pytest.raises(ConfigError, match="environment variable B_KEY is not set"):
        b.api_key()
    monkeypatch.setenv("B_KEY", "k2")
    assert b.api_key() == "k2"


def test_settings_cache_rereads_a_changed_file(tmp_path):
    path = write(tmp_path, '[[connectors]]\nname="a"\napi_key_env="K"\n')
    cache = SettingsCache(path)
    assert [c.name for c in cache.get().connectors] == ["a"]
    path.write_text('[[connectors]]\nname="a"\napi_key_env="K"\n[[connectors]]\nname="b"\napi_key_env="K"\n')
    assert [c.name for c in cache.get().connectors] == ["a", "b"]


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("15m", 900), ("2h", 7200), ("1h30m", 5400), ("1d", 86400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "5s", "1x"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_missing_keys_are_reported_together_at_start_up(tmp_path, monkeypatch):
    from config.settings import check_api_keys

    path = write(tmp_path, '[[connectors]]\nname="a"\napi_key_env="A_KEY"\n'
                           f'[[connectors]]\nname="b"\napi_key_file="{tmp_path / "missing"}"\n'
                           '[[connectors]]\nname="c"\napi_key_env="C_KEY"\n')
    monkeypatch.delenv("A_KEY", raising=False)
    monkeypatch.setenv("C_KEY", "present-key")
    with pytest.raises(ConfigError) as info:
        check_api_keys(load_settings(path))
    message = str(info.value)
    assert "connectors[0] connector 'a': environment variable A_KEY is not set" in message
    assert "connectors[1] connector 'b': api_key_file" in message and "No such file" in message
    assert "present-key" not in message and "connector 'c'" not in message
    monkeypatch.setenv("A_KEY", "k")
    (tmp_path / "missing").write_text("k2")
    (tmp_path / "missing").chmod(0o600)
    check_api_keys(load_settings(path))


def test_worker_refuses_to_start_without_its_keys(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli.main import app
    from config.settings import SettingsCache
    from worker import runtime

    path = write(tmp_path, '[[connectors]]\nname="a"\napi_key_env="A_KEY"\n')
    monkeypatch.delenv("A_KEY", raising=False)
    monkeypatch.setattr(runtime, "_settings", SettingsCache(path))
    monkeypatch.setattr("cli.processes._celery", lambda *args: pytest.fail("celery must not start"))
    result = CliRunner().invoke(app, ["worker", "--config", str(path)])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert "environment variable A_KEY is not set" in str(result.exception)


def test_access_snapshot_settings_and_their_beat_entry(tmp_path):
    from worker.celery_app import _beat_schedule

    settings = load_settings(write(tmp_path, '[access]\nrefresh_interval = "2m"\n'))
    entry = _beat_schedule(settings)["access-refresh"]
    assert entry["task"] == "jumpsync.access.refresh" and entry["schedule"] == 120
    assert entry["options"]["expires"] == 120  # a backlog of refreshes is dropped, not worked through
    assert "access-refresh" not in _beat_schedule(load_settings(write(tmp_path, "[access]\nsnapshots = false\n")))
    assert load_settings(write(tmp_path, "")).file.access.refresh_interval == "1m"
    with pytest.raises(ConfigError, match=r"access\.refresh_interval.*minimum"):
        load_settings(write(tmp_path, '[access]\nrefresh_interval = "0s"\n'))
    with pytest.raises(ConfigError, match=r"access\.refresh_interval"):
        load_settings(write(tmp_path, '[access]\nrefresh_interval = "soon"\n'))
