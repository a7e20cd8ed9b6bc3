"""API tokens: create one (its text shown once), authenticate a presented one, revoke, list.

A token reads ``jst_<id>_<secret>``: ``id`` is 12 lowercase hex characters, public, the row's key (it names the
token in logs and in ``jumpsync tokens``); ``secret`` is ``secrets.token_urlsafe(32)`` (43 characters, 256
bits). The database keeps ``sha256(secret)`` and nothing from which the secret could be recovered; the
comparison is ``hmac.compare_digest``. Why a plain hash suffices: the ``auth`` package's docstring.

``authenticate`` answers the same ``UNKNOWN`` for an id that does not exist and for a wrong secret, and looks
at revocation and expiry only once the secret matched: someone who knows a token's id (it is not secret) learns
nothing about it from the refusals. It records ``last_used_at`` at most once a minute per token, with a
conditional update, so a busy API does not write a row per request nor two processes the same minute.

A token's name is never given to another token, not even after revocation: ``requested_by`` records
``token:<name>``, and that must point at one token for as long as the requests are kept.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from auth.scopes import InvalidScope, Principal, Scope, parse_scope, parse_scopes
from models.columns import iso
from models.tables import ApiToken, table_of, utcnow

log = logging.getLogger(__name__)

PREFIX = "jst_"
ID_LENGTH = 12
SECRET_BYTES = 32
_TOKEN = re.compile(r"jst_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
NAME_RULE = "1 to 128 letters, digits, and _ . @ -, starting with a letter or digit"
MAX_CREATED_BY = 256
#: ``last_used_at`` is written when it is older than this (or unset), not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(ValueError):
    """A token cannot be created or revoked as asked (a name in use, no scopes, no such token...)."""


class TokenNotFound(TokenError, LookupError):
    """No token has that name or id."""


class RefusalReason(StrEnum):
    MALFORMED = "malformed"  # not of the form jst_<id>_<secret>
    UNKNOWN = "unknown"      # no such id, or the secret does not match
    REVOKED = "revoked"
    EXPIRED = "expired"


class TokenRefused(Exception):
    """A presented token that grants nothing; ``reason`` says why (never the token)."""

    def __init__(self, reason: RefusalReason) -> None:
        super().__init__(f"token refused: {reason.value}")
        self.reason = reason


@dataclass(frozen=True)
class TokenInfo:
    """A token as ``jumpsync tokens`` and the API show it: never its secret nor its hash."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, row: ApiToken) -> TokenInfo:
        return cls(id=row.id, name=row.name, scopes=tuple(row.scopes), created_at=row.created_at,
                   created_by=row.created_by, expires_at=row.expires_at, revoked_at=row.revoked_at,
                   last_used_at=row.last_used_at)

    def state(self, now: datetime | None = None) -> str:
        """``revoked``, ``expired`` or ``active``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "scopes": list(self.scopes), "state": self.state(),
                "created_at": iso(self.created_at), "created_by": self.created_by,
                "expires_at": iso(self.expires_at), "revoked_at": iso(self.revoked_at),
                "last_used_at": iso(self.last_used_at)}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


#: Compared against when the id is unknown, so that an unknown id costs what a wrong secret does.
_NO_SUCH_HASH = hash_secret(secrets.token_urlsafe(SECRET_BYTES))


def check_token_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TokenError(f"token name {name!r} is not valid ({NAME_RULE})")
    return name


def create_token(engine: Engine, name: str, scopes: Sequence[str], expires_in: timedelta | None,
                 created_by: str) -> tuple[str, TokenInfo]:
    """Make a token: its text (returned here once and stored nowhere) and what is recorded of it.

    ``scopes`` must hold at least one scope; a bad one raises ``InvalidScope``, a name in use ``TokenError``.
    """
    check_token_name(name)
    if isinstance(scopes, str):
        raise TokenError("scopes must be a list of scopes, not one string")
    parsed = parse_scopes(scopes)
    if not parsed:
        raise TokenError("a token needs at least one scope")
    if expires_in is not None and expires_in <= timedelta(0):
        raise TokenError("a token's lifetime must be positive")
    if not created_by or len(created_by) > MAX_CREATED_BY:
        raise TokenError(f"created_by must be 1 to {MAX_CREATED_BY} characters")
    secret = secrets.token_urlsafe(SECRET_BYTES)
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session:
        if session.execute(select(col(ApiToken.id)).where(col(ApiToken.name) == name)).first() is not None:
            raise TokenError(f"a token named {name!r} exists already (names are never reused, even once revoked)")
        for _ in range(3):  # a clash of 48-bit random ids is unlikely, but not a reason to fail
            row = ApiToken(id=secrets.token_hex(ID_LENGTH // 2), name=name, secret_hash=hash_secret(secret),
                           scopes=[str(scope) for scope in parsed], created_at=now, created_by=created_by,
                           expires_at=now + expires_in if expires_in is not None else None)
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                if session.execute(select(col(ApiToken.id)).where(col(ApiToken.name) == name)).first():
                    raise TokenError(f"a token named {name!r} exists already") from None
                continue
            return f"{PREFIX}{row.id}_{secret}", TokenInfo.of(row)
    raise TokenError("could not find a free token id; try again")


def _principal(row: ApiToken | Row) -> Principal:
    """The principal of a token, with the scopes that still parse (one that does not is dropped, and logged)."""
    scopes: list[Scope] = []
    for text in row.scopes:
        try:
            scopes.append(parse_scope(text))
        except InvalidScope as exc:
            log.warning("token %s (%s): ignoring scope it was created with: %s", row.id, row.name, exc)
    return Principal(token_id=row.id, name=row.name, scopes=tuple(scopes))


def authenticate(engine: Engine, presented: str) -> Principal:
    """The principal ``presented`` stands for; ``TokenRefused`` with the reason if it stands for none."""
    match = _TOKEN.fullmatch(presented) if isinstance(presented, str) else None
    if match is None:
        raise TokenRefused(RefusalReason.MALFORMED)
    token_id, secret = match.groups()
    # Core, not the ORM: every API call pays for this look-up, and the ORM's identity map and instance
    # bookkeeping cost more than the query.
    with engine.connect() as connection:
        row = connection.execute(_BY_ID, {"token_id": token_id}).first()
        matches = hmac.compare_digest(hash_secret(secret), row.secret_hash if row else _NO_SUCH_HASH)
        if row is None or not matches:
            raise TokenRefused(RefusalReason.UNKNOWN)
        now = utcnow()
        if row.revoked_at is not None:
            raise TokenRefused(RefusalReason.REVOKED)
        if row.expires_at is not None and row.expires_at <= now:
            raise TokenRefused(RefusalReason.EXPIRED)
        if row.last_used_at is None or row.last_used_at <= now - LAST_USED_RESOLUTION:
            _record_use(connection, token_id, now)
        return _principal(row)


_TOKENS = table_of(ApiToken)
_BY_ID = select(_TOKENS.c.id, _TOKENS.c.name, _TOKENS.c.secret_hash, _TOKENS.c.scopes, _TOKENS.c.revoked_at,
                _TOKENS.c.expires_at, _TOKENS.c.last_used_at).where(_TOKENS.c.id == bindparam("token_id"))


def _record_use(connection: Connection, token_id: str, now: datetime) -> None:
    """Set ``last_used_at`` unless another request did within the resolution (then this update matches no row)."""
    stale = or_(_TOKENS.c.last_used_at.is_(None), _TOKENS.c.last_used_at <= now - LAST_USED_RESOLUTION)
    connection.execute(update(_TOKENS).where(_TOKENS.c.id == token_id, stale).values(last_used_at=now))
    connection.commit()


def _find(session: Session, name_or_id: str) -> ApiToken:
    rows = session.execute(select(ApiToken).where(
        or_(col(ApiToken.id) == name_or_id, col(ApiToken.name) == name_or_id))).scalars().all()
    if not rows:
        raise TokenNotFound(f"no token named or with id {name_or_id!r}")
    if len(rows) > 1:
        ids = ", ".join(sorted(row.id for row in rows))
        raise TokenError(f"{name_or_id!r} is one token's name and another's id ({ids}); revoke by id")
    return rows[0]


def revoke(engine: Engine, name_or_id: str) -> TokenInfo:
    """Revoke a token by name or id, at once and for good. Revoking a revoked token changes nothing."""
    with Session(engine, expire_on_commit=False) as session:
        row = _find(session, name_or_id)
        if row.revoked_at is None:
            now = utcnow()
            session.execute(update(ApiToken).where(col(ApiToken.id) == row.id,
                                                   col(ApiToken.revoked_at).is_(None)).values(revoked_at=now))
            session.commit()
            session.refresh(row)
        return TokenInfo.of(row)


def list_tokens(engine: Engine) -> list[TokenInfo]:
    """Every token, revoked and expired ones too, oldest first."""
    with Session(engine) as session:
        rows = session.execute(select(ApiToken).order_by(col(ApiToken.created_at), col(ApiToken.name))).scalars()
        return [TokenInfo.of(row) for row in rows]
