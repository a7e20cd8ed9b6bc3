"""Scopes: what a token may do, as ``verb:connector[:action]`` strings, and the principal that holds them.

Grammar (docs/security.md, "Tokens and scopes")::

    provision:<connector|*>[:<action|*>]
    read:<connector|*>
    approve:<connector|*>

``*`` is every connector (or every action). A scope's text is canonical: ``provision:acme:*`` is read as
``provision:acme``, which is how it is shown and stored. Anything else is an ``InvalidScope`` naming the
problem, so a typo can never become a broader (or silently empty) grant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from config.actions import ACTION_NAMES
from config.values import NAME_MAX, check_name

ANY = "*"


class Verb(StrEnum):
    PROVISION = "provision"
    READ = "read"
    APPROVE = "approve"


class InvalidScope(ValueError):
    """A scope that does not follow the grammar; the message names the scope and the problem."""


_GRAMMAR = {Verb.PROVISION: "provision:<connector|*>[:<action|*>]", Verb.READ: "read:<connector|*>",
            Verb.APPROVE: "approve:<connector|*>"}


@dataclass(frozen=True)
class Scope:
    """One grant. ``action`` is ``*`` for read and approve (they cover a connector as a whole)."""

    verb: Verb
    connector: str
    action: str = ANY

    def __str__(self) -> str:
        if self.verb is Verb.PROVISION and self.action != ANY:
            return f"{self.verb.value}:{self.connector}:{self.action}"
        return f"{self.verb.value}:{self.connector}"

    def covers(self, verb: Verb, connector: str, action: str | None) -> bool:
        """Whether this scope grants ``verb`` on ``connector`` (and, for provision, ``action``; None asks for
        every action, which only ``*`` grants)."""
        if self.verb is not verb or self.connector not in (ANY, connector):
            return False
        return verb is not Verb.PROVISION or self.action == ANY or self.action == action


def _suggest(word: str, choices: Iterable[str]) -> str:
    from models.resolver import suggest

    return suggest(word, choices)


def parse_scope(text: str) -> Scope:
    """The scope ``text`` names; ``InvalidScope`` (a ``ValueError``) says what is wrong with it."""
    if not isinstance(text, str):
        raise InvalidScope(f"a scope is text, not {type(text).__name__}")
    if not text:
        raise InvalidScope("empty scope; expected provision:<connector|*>[:<action|*>], read:<connector|*> or "
                           "approve:<connector|*>")
    verb_text, *rest = text.split(":")
    try:
        verb = Verb(verb_text)
    except ValueError:
        raise InvalidScope(f"unknown verb {verb_text!r} in scope {text!r}{_suggest(verb_text, [known.value for known in Verb])} "
                           f"(known: {', '.join(Verb)})") from None
    most = 2 if verb is Verb.PROVISION else 1
    if not rest:
        raise InvalidScope(f"scope {text!r} names no connector (expected {_GRAMMAR[verb]})")
    if len(rest) > most:
        raise InvalidScope(f"scope {text!r} has too many parts (expected {_GRAMMAR[verb]})")
    connector = rest[0]
    if connector != ANY:
        try:
            check_name(connector)
        except ValueError:
            raise InvalidScope(f"bad connector name {connector!r} in scope {text!r} (lowercase letters, digits, "
                               f"- and _, up to {NAME_MAX}; or * for every connector)") from None
    action = rest[1] if len(rest) == 2 else ANY
    if action != ANY and action not in ACTION_NAMES:
        raise InvalidScope(f"unknown action {action!r} in scope {text!r}{_suggest(action, ACTION_NAMES)} "
                           f"(known: {', '.join(ACTION_NAMES)}, or * for every action)")
    return Scope(verb, connector, action)


def parse_scopes(texts: Iterable[str]) -> tuple[Scope, ...]:
    """Every scope of ``texts``, in order, each once; the first bad one raises ``InvalidScope``."""
    return tuple(dict.fromkeys(parse_scope(text) for text in texts))


@dataclass(frozen=True)
class Principal:
    """Whoever presented a token: its id and name, and what its scopes let it do."""

    token_id: str
    name: str
    scopes: tuple[Scope, ...]

    def may(self, verb: Verb, connector: str, action: str | None = None) -> bool:
        """Whether some scope grants ``verb`` on ``connector``. For provision, ``action`` is the action asked
        for; None means every action, which only a ``provision:<connector|*>`` scope grants. ``connector`` is
        taken literally: asking for ``*`` is asking for every connector."""
        return any(scope.covers(verb, connector, action) for scope in self.scopes)

    @property
    def requester(self) -> str:
        """What ``requested_by`` records for this principal's requests."""
        return f"token:{self.name}"
