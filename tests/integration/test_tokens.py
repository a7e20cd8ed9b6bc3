"""API tokens on SQLite and PostgreSQL: create, authenticate, revoke, expire; what the database holds."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlmodel import Session, col

from auth import tokens
from auth.scopes import InvalidScope, Scope, Verb
from auth.tokens import RefusalReason, TokenError, TokenNotFound, TokenRefused
from models.tables import ApiToken, utcnow


def make(engine, name="ticketing", scopes=("provision:acme:group.add-member", "read:*"), expires_in=None):
    return tokens.create_token(engine, name, list(scopes), expires_in, "cli:tester")


def refusal(engine, presented) -> RefusalReason:
    with pytest.raises(TokenRefused) as caught:
        tokens.authenticate(engine, presented)
    return caught.value.reason


def test_a_created_token_authenticates_as_its_principal(engine):
    text_, info = make(engine)
    assert text_.startswith(f"jst_{info.id}_") and len(info.id) == 12 and len(text_) == 4 + 12 + 1 + 43
    assert info.scopes == ("provision:acme:group.add-member", "read:*") and info.created_by == "cli:tester"
    assert info.state() == "active" and info.expires_at is None and info.last_used_at is None
    principal = tokens.authenticate(engine, text_)
    assert principal.token_id == info.id and principal.name == "ticketing"
    assert principal.scopes == (Scope(Verb.PROVISION, "acme", "group.add-member"), Scope(Verb.READ, "*"))
    assert principal.requester == "token:ticketing"
    assert principal.may(Verb.PROVISION, "acme", "group.add-member")
    assert not principal.may(Verb.APPROVE, "acme")


def test_scopes_are_stored_canonical_and_once(engine):
    _, info = make(engine, scopes=["provision:acme:*", "read:*", "read:*"])
    assert info.scopes == ("provision:acme", "read:*")


def test_only_the_hash_is_stored(engine):
    """No column of the row holds the secret, nor the token's text; the digest is SHA-256 of the secret."""
    text_, info = make(engine)
    secret = text_[len(f"jst_{info.id}_"):]
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM api_tokens")).mappings().all()
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0].values())
    assert secret not in stored and text_ not in stored
    assert rows[0]["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()


def test_a_wrong_secret_and_an_unknown_id_are_both_unknown(engine):
    text_, info = make(engine)
    secret = text_[len(f"jst_{info.id}_"):]
    other = "A" if secret[0] != "A" else "B"
    assert refusal(engine, f"jst_{info.id}_{other}{secret[1:]}") is RefusalReason.UNKNOWN
    assert refusal(engine, f"jst_{'0' * 12 if info.id != '0' * 12 else '1' * 12}_{secret}") is RefusalReason.UNKNOWN


@pytest.mark.parametrize("presented", [
    "", "jst_", "Bearer jst_0123456789ab_" + "a" * 43, "jst_0123456789ab_" + "a" * 42, "jst_0123456789ab_" + "a" * 44,
    "jst_0123456789AB_" + "a" * 43, "jsx_0123456789ab_" + "a" * 43, "jst_0123456789ab_" + "a" * 42 + "=",
    "jst_0123456789ab_" + "a" * 43 + "\n", " jst_0123456789ab_" + "a" * 43, "jst_0123456789a_" + "a" * 44,
])
def test_malformed_tokens_are_refused_without_a_lookup(engine, presented):
    assert refusal(engine, presented) is RefusalReason.MALFORMED


def test_a_non_string_is_malformed(engine):
    assert refusal(engine, None) is RefusalReason.MALFORMED  # type: ignore[arg-type]


def test_revoked_tokens_are_refused_by_name_or_id(engine):
    first, first_info = make(engine, "first")
    second, second_info = make(engine, "second")
    revoked = tokens.revoke(engine, "first")
    assert revoked.revoked_at is not None and revoked.state() == "revoked"
    assert refusal(engine, first) is RefusalReason.REVOKED
    assert tokens.revoke(engine, second_info.id).state() == "revoked"
    assert refusal(engine, second) is RefusalReason.REVOKED
    assert tokens.revoke(engine, "first").revoked_at == revoked.revoked_at  # again: nothing changes


def test_a_revoked_token_with_a_wrong_secret_is_unknown(engine):
    """Revocation is told only to whoever holds the secret: the id alone reveals nothing."""
    text_, info = make(engine)
    tokens.revoke(engine, info.id)
    secret = text_[len(f"jst_{info.id}_"):]
    assert refusal(engine, f"jst_{info.id}_{'A' if secret[0] != 'A' else 'B'}{secret[1:]}") is RefusalReason.UNKNOWN


def test_revoking_an_unknown_token(engine):
    with pytest.raises(TokenNotFound, match="no token named or with id 'nope'"):
        tokens.revoke(engine, "nope")


def test_expired_tokens_are_refused(engine):
    text_, info = make(engine, expires_in=timedelta(days=90))
    assert info.expires_at is not None and timedelta(days=89) < info.expires_at - info.created_at <= timedelta(days=90)
    tokens.authenticate(engine, text_)
    with Session(engine) as session:
        session.execute(update(ApiToken).where(col(ApiToken.id) == info.id)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    assert refusal(engine, text_) is RefusalReason.EXPIRED
    assert tokens.list_tokens(engine)[0].state() == "expired"


def test_last_use_is_recorded_at_most_once_a_minute(engine):
    text_, info = make(engine)

    def last_used():
        with Session(engine) as session:
            return session.execute(select(col(ApiToken.last_used_at)).where(col(ApiToken.id) == info.id)).scalar_one()

    assert last_used() is None
    tokens.authenticate(engine, text_)
    first = last_used()
    assert first is not None and utcnow() - first < timedelta(seconds=30)
    tokens.authenticate(engine, text_)
    assert last_used() == first  # within the minute: not written again
    with Session(engine) as session:  # as if the last use were a minute ago
        session.execute(update(ApiToken).where(col(ApiToken.id) == info.id)
                        .values(last_used_at=first - tokens.LAST_USED_RESOLUTION))
        session.commit()
    tokens.authenticate(engine, text_)
    assert last_used() > first - tokens.LAST_USED_RESOLUTION
    assert tokens.list_tokens(engine)[0].last_used_at == last_used()


def test_a_name_is_never_reused(engine):
    make(engine, "ticketing")
    with pytest.raises(TokenError, match="a token named 'ticketing' exists already"):
        make(engine, "ticketing")
    tokens.revoke(engine, "ticketing")
    with pytest.raises(TokenError, match="exists already"):
        make(engine, "ticketing")
    assert [t.name for t in tokens.list_tokens(engine)] == ["ticketing"]


@pytest.mark.parametrize(("name", "scopes", "expires_in", "message"), [
    ("", ["read:*"], None, "token name '' is not valid"),
    ("has space", ["read:*"], None, "is not valid"),
    ("x" * 129, ["read:*"], None, "is not valid"),
    ("-lead", ["read:*"], None, "is not valid"),
    ("ok", [], None, "at least one scope"),
    ("ok", "read:*", None, "not one string"),
    ("ok", ["read:*"], timedelta(0), "must be positive"),
])
def test_create_refuses_bad_input(engine, name, scopes, expires_in, message):
    with pytest.raises(TokenError, match=message):
        tokens.create_token(engine, name, scopes, expires_in, "cli:tester")
    assert tokens.list_tokens(engine) == []


def test_create_refuses_a_bad_scope_and_writes_nothing(engine):
    with pytest.raises(InvalidScope, match="unknown action 'group.add'"):
        make(engine, scopes=["read:*", "provision:acme:group.add"])
    assert tokens.list_tokens(engine) == []


def test_a_scope_that_no_longer_parses_is_dropped(engine, caplog):
    """A stored scope an older release wrote and this one does not know grants nothing (fail closed)."""
    text_, info = make(engine, scopes=["read:acme", "approve:acme"])
    with Session(engine) as session:
        session.execute(update(ApiToken).where(col(ApiToken.id) == info.id)
                        .values(scopes=["read:acme", "approve:acme:everything"]))
        session.commit()
    principal = tokens.authenticate(engine, text_)
    assert principal.scopes == (Scope(Verb.READ, "acme"),) and not principal.may(Verb.APPROVE, "acme")
    assert "ignoring scope" in caplog.text


def test_list_shows_every_token_and_no_secret(engine):
    text_a, _ = make(engine, "a")
    text_b, b = make(engine, "b", scopes=["approve:*"], expires_in=timedelta(hours=1))
    tokens.revoke(engine, "a")
    listed = tokens.list_tokens(engine)
    assert [(t.name, t.state()) for t in listed] == [("a", "revoked"), ("b", "active")]
    as_json = [t.to_json() for t in listed]
    assert set(as_json[1]) == {"id", "name", "scopes", "state", "created_at", "created_by", "expires_at",
                               "revoked_at", "last_used_at"}
    assert as_json[1]["scopes"] == ["approve:*"] and as_json[1]["id"] == b.id
    flat = repr(as_json)
    for presented in (text_a, text_b):
        assert presented[len("jst_") + 13:] not in flat


def test_two_processes_in_the_same_minute_write_last_use_once(engine):
    """Each read the token before the other wrote: the update is conditional, so the second matches no row."""
    _, info = make(engine)
    first = utcnow()
    with Session(engine) as session:
        tokens._record_use(session, info.id, first)
    with Session(engine) as session:
        tokens._record_use(session, info.id, first + timedelta(seconds=5))
        stored = session.execute(select(col(ApiToken.last_used_at)).where(col(ApiToken.id) == info.id)).scalar_one()
    assert stored == first
