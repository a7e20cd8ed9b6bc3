"""Where ``jumpsync api`` agrees to listen: loopback, or TLS (its own, or a proxy's it is told of); never plain
HTTP on a network address, where bearer tokens would cross the wire in clear text."""

from __future__ import annotations

from pathlib import Path

import pytest

from httpapi.server import Listen, PlainHttpRefused, is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_is_served_in_plain_http(host):
    assert is_loopback(host)
    Listen(host=host).check()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "api.example.com", ""])
def test_a_network_address_without_tls_is_refused(host):
    assert not is_loopback(host)
    with pytest.raises(PlainHttpRefused, match="--behind-tls-proxy"):
        Listen(host=host).check()


def test_tls_or_a_tls_proxy_allows_a_network_address():
    Listen(host="0.0.0.0", certfile=Path("cert.pem"), keyfile=Path("key.pem")).check()
    Listen(host="0.0.0.0", behind_tls_proxy=True).check()
    with pytest.raises(PlainHttpRefused, match="both"):
        Listen(host="127.0.0.1", certfile=Path("cert.pem")).check()


def test_the_url_says_the_scheme():
    assert Listen().url == "http://127.0.0.1:8787"
    assert Listen(host="::1", port=9000).url == "http://[::1]:9000"
    assert Listen(host="0.0.0.0", certfile=Path("c"), keyfile=Path("k")).url == "https://0.0.0.0:8787"


def test_the_command_refuses_before_serving(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli.main import app
    from config.settings import SettingsCache
    from worker import runtime

    config = tmp_path / "jumpsync.toml"
    config.write_text('[[connectors]]\nname = "acme"\napi_key_env = "ACME_KEY"\n')
    monkeypatch.setattr(runtime, "_settings", SettingsCache())
    result = CliRunner().invoke(app, ["api", "--host", "0.0.0.0", "--config", str(config)])
    assert result.exit_code == 2
    assert "refusing to serve plain HTTP on 0.0.0.0" in result.output
