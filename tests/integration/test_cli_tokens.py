"""``jumpsync tokens create | list | revoke`` on SQLite and PostgreSQL, through the real command line."""

from __future__ import annotations

import json
import re

from sqlalchemy import text

from auth import local, tokens
from auth.tokens import RefusalReason, TokenRefused

TOKEN = re.compile(r"jst_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def created(run, *args: str) -> str:
    result = run("tokens", "create", *args)
    assert result.exit_code == 0, result.output
    [token] = TOKEN.findall(result.stdout)
    assert result.stdout.strip() == token  # stdout is the token alone: TOKEN=$(jumpsync tokens create ...)
    assert "only time the token is shown" in result.stderr
    return token


def test_create_prints_a_token_that_authenticates(run, engine):
    token = created(run, "ticketing", "--scope", "provision:acme:group.add-member", "--scope", "read:*",
                    "--expires", "30d")
    principal = tokens.authenticate(engine, token)
    assert principal.name == "ticketing" and [str(s) for s in principal.scopes] == [
        "provision:acme:group.add-member", "read:*"]
    [info] = tokens.list_tokens(engine)
    assert info.created_by == f"cli:{local.login_name()}"
    assert info.expires_at is not None and 29 < (info.expires_at - info.created_at).total_seconds() / 86400 <= 30


def test_create_json_shows_the_token_once_and_the_record(run, engine):
    result = run("tokens", "create", "bot", "--scope", "approve:acme", "--expires", "never", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert TOKEN.fullmatch(body["token"]) and body["name"] == "bot" and body["scopes"] == ["approve:acme"]
    assert body["expires_at"] is None and body["state"] == "active"
    assert "only time the token is shown" in result.stderr
    tokens.authenticate(engine, body["token"])


def test_without_expires_a_token_lasts_90_days(run, engine):
    created(run, "t", "--scope", "read:*")
    [info] = tokens.list_tokens(engine)
    assert info.expires_at is not None and round((info.expires_at - info.created_at).total_seconds()) == 90 * 86400


def test_create_refuses_bad_input_naming_the_problem(run, engine):
    cases = [
        (["t", "--scope", "read:Acme"], "bad connector name 'Acme'"),
        (["t", "--scope", "provision:acme:group.add"], "unknown action 'group.add'"),
        (["t", "--scope", "write:*"], "unknown verb 'write'"),
        (["t", "--scope", "read:*", "--expires", "soon"], "--expires: 'soon' is not a duration"),
        (["bad name", "--scope", "read:*"], "token name 'bad name' is not valid"),
    ]
    for args, message in cases:
        result = run("tokens", "create", *args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
        assert not TOKEN.search(result.output)
    assert run("tokens", "create", "t").exit_code == 2  # --scope is required
    assert tokens.list_tokens(engine) == []


def test_a_duplicate_name_is_refused(run, engine):
    created(run, "ticketing", "--scope", "read:*")
    result = run("tokens", "create", "ticketing", "--scope", "approve:*")
    assert result.exit_code == 2 and "a token named 'ticketing' exists already" in result.stderr
    assert not TOKEN.search(result.output)
    assert [info.scopes for info in tokens.list_tokens(engine)] == [("read:*",)]


def test_list_shows_state_and_use_but_never_the_secret(run, engine):
    first = created(run, "first", "--scope", "read:*")
    second = created(run, "second", "--scope", "provision:*", "--scope", "approve:acme")
    tokens.authenticate(engine, first)
    assert run("tokens", "revoke", "second").exit_code == 0
    result = run("tokens", "list", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [(t["name"], t["state"]) for t in listed] == [("first", "active"), ("second", "revoked")]
    assert listed[0]["last_used_at"] is not None and listed[1]["last_used_at"] is None
    assert listed[1]["revoked_at"] is not None and listed[0]["revoked_at"] is None
    assert listed[1]["scopes"] == ["provision:*", "approve:acme"]
    with engine.connect() as connection:
        hashes = connection.execute(text("SELECT secret_hash FROM api_tokens")).scalars().all()
    table = run("tokens", "list")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split("\t")[:4] == ["id", "name", "state", "scopes"]
    assert [line.split("\t")[1:3] for line in lines[1:]] == [["first", "active"], ["second", "revoked"]]
    for shown in (result.stdout, table.stdout):
        for secret in (first[17:], second[17:], *hashes):
            assert secret not in shown


def test_list_with_no_tokens(run):
    result = run("tokens", "list")
    assert result.exit_code == 0 and result.stdout == "" and "no tokens" in result.stderr
    assert json.loads(run("tokens", "list", "--json").stdout) == []


def test_revoke_by_name_or_id(run, engine):
    token = created(run, "ticketing", "--scope", "read:*")
    token_id = token[4:16]
    result = run("tokens", "revoke", token_id, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "revoked"
    try:
        tokens.authenticate(engine, token)
    except TokenRefused as refused:
        assert refused.reason is RefusalReason.REVOKED
    else:
        raise AssertionError("a revoked token authenticated")
    again = run("tokens", "revoke", "ticketing")
    assert again.exit_code == 0 and f"revoked token ticketing (id {token_id})" in again.stdout


def test_revoke_an_unknown_token(run):
    result = run("tokens", "revoke", "nope")
    assert result.exit_code == 2 and "no token named or with id 'nope'" in result.stderr
