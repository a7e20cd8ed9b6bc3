"""The states of what the database tracks, and the only moves between them.

Every status column holds one of these enums' values (a ``StrEnum`` is its string, so rows, JSON and the CLI
read the same words as before). A state machine lists its transitions here and nowhere else: code that moves a
row from one status to another names the move with ``<Machine>.move(current, target)``, which raises
``IllegalTransition`` for a move not listed, so a new transition fails the tests that exercise it until it is
added to the table below (and to docs/data-model.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar


class RunStatus(StrEnum):
    """A sync run (``sync_runs.status``): one active run per connector (running or finalizing)."""

    RUNNING = "running"
    FINALIZING = "finalizing"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    SKIPPED = "skipped"


class PartStatus(StrEnum):
    """A part of a run (``sync_parts.status``): one resource type or one derived step."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    #: Fetched, but its deletions held by the safety valve: its rows are live, the run is partial.
    HELD = "held"


class PartPhase(StrEnum):
    """``fetch`` parts list one resource type while the run is running; ``derive`` parts run in the finalizer."""

    FETCH = "fetch"
    DERIVE = "derive"


class Trigger(StrEnum):
    """What started a run (``sync_runs.trigger``)."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    #: A full sync asked for by an incremental refresh that could not trust the events.
    FALLBACK = "fallback"
    #: An incremental refresh from Directory Insights events (pipeline.incremental).
    EVENTS = "events"


class RequestStatus(StrEnum):
    """A provisioning request (``provisioning_requests.status``)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: It could never succeed as given: invalid, an unknown name, refused by policy.
    REJECTED = "rejected"
    #: The connector's policy wants approvers for it (provisioning.approvals): recorded, not enqueued.
    AWAITING_APPROVAL = "awaiting_approval"
    #: An approver said no: it is never applied.
    DENIED = "denied"
    #: Nobody approved it within the policy's ``approval_expires``: it is never applied.
    EXPIRED = "expired"


class RefreshOutcome(StrEnum):
    """How the last incremental refresh of a connector ended (``event_cursors.outcome``)."""

    QUIET = "quiet"
    APPLIED = "applied"
    SKIPPED = "skipped"
    WAITING = "waiting"
    FULL_SYNC = "full_sync"
    FAILED = "failed"


class ListingOutcome(StrEnum):
    """How an ``[[msp]]`` key's last organisations listing ended (``msp_listings.outcome``)."""

    OK = "ok"
    FAILED = "failed"


S = TypeVar("S", bound=StrEnum)


class IllegalTransition(ValueError):
    """A move between two states that the state machine does not list."""


@dataclass(frozen=True)
class StateMachine(Generic[S]):
    """The states a row may be created in and the moves it may make after."""

    name: str
    initial: frozenset[S]
    moves: Mapping[S, frozenset[S]]

    @property
    def terminal(self) -> frozenset[S]:
        """The states no move leaves."""
        return frozenset(state for state, targets in self.moves.items() if not targets)

    def allows(self, current: S, target: S) -> bool:
        return target in self.moves.get(current, frozenset())

    def move(self, current: S | Iterable[S], target: S) -> S:
        """``target``, once every one of ``current`` may move to it; else ``IllegalTransition``.

        Called where the code builds the conditional update (``WHERE status IN current``), so the move is
        checked whether or not a row matches.
        """
        sources = (current,) if isinstance(current, StrEnum) else tuple(current)
        for source in sources:
            if not self.allows(source, target):
                raise IllegalTransition(f"{self.name}: {source} -> {target} is not a listed transition")
        return target

    def create(self, state: S) -> S:
        """``state``, if a row may start in it."""
        if state not in self.initial:
            raise IllegalTransition(f"{self.name}: a row cannot start as {state}")
        return state


def _machine(name: str, initial: Iterable[S], moves: Mapping[S, Iterable[S]]) -> StateMachine[S]:
    return StateMachine(name, frozenset(initial), {state: frozenset(targets) for state, targets in moves.items()})


_R = RunStatus
RUNS: StateMachine[RunStatus] = _machine("sync run", (_R.RUNNING, _R.SKIPPED), {
    # Every fetch part ended: the finalizer runs. An incremental run ends straight from running. The reaper
    # fails a run whose worker died.
    _R.RUNNING: (_R.FINALIZING, _R.SUCCEEDED, _R.FAILED),
    _R.FINALIZING: (_R.SUCCEEDED, _R.PARTIAL, _R.FAILED),
    _R.SUCCEEDED: (), _R.PARTIAL: (), _R.FAILED: (), _R.SKIPPED: (),
})

_P = PartStatus
PARTS: StateMachine[PartStatus] = _machine("sync part", (_P.PENDING, _P.RUNNING), {
    # A claimed part runs; a redelivered one (its worker died) is claimed again with the next attempt; one whose
    # lease ran out (its process stopped renewing it) is handed back to pending by the reaper and sent again.
    _P.PENDING: (_P.RUNNING, _P.FAILED),
    _P.RUNNING: (_P.RUNNING, _P.PENDING, _P.SUCCEEDED, _P.FAILED, _P.SKIPPED, _P.HELD),
    _P.SUCCEEDED: (), _P.FAILED: (), _P.SKIPPED: (), _P.HELD: (),
})

_Q = RequestStatus
REQUESTS: StateMachine[RequestStatus] = _machine("provisioning request",
                                                 (_Q.PENDING, _Q.REJECTED, _Q.AWAITING_APPROVAL), {
    # A worker claims it; a claim whose lease ran out is taken over (running -> running); a transient error
    # sends it back to pending for another attempt; an operator's retry sends a failed one back. One that
    # needs approval waits until enough approvers released it (pending), one denied it, or its time ran out.
    _Q.AWAITING_APPROVAL: (_Q.PENDING, _Q.DENIED, _Q.EXPIRED),
    _Q.PENDING: (_Q.RUNNING,),
    _Q.RUNNING: (_Q.RUNNING, _Q.PENDING, _Q.SUCCEEDED, _Q.FAILED, _Q.REJECTED),
    _Q.FAILED: (_Q.PENDING,),
    _Q.SUCCEEDED: (), _Q.REJECTED: (), _Q.DENIED: (), _Q.EXPIRED: (),
})

#: The statuses of a run that hold the connector's one active slot (the partial unique index).
ACTIVE_RUN_STATUSES: tuple[RunStatus, ...] = (RunStatus.RUNNING, RunStatus.FINALIZING)
#: A part in one of these has ended: the fan-in counts it.
ENDED_PART_STATUSES: tuple[PartStatus, ...] = (_P.SUCCEEDED, _P.FAILED, _P.SKIPPED, _P.HELD)
#: What derived parts may read: every row of such a part is fresh or still live.
USABLE_PART_STATUSES: tuple[PartStatus, ...] = (_P.SUCCEEDED, _P.HELD)
#: A request in one of these has its outcome.
ENDED_REQUEST_STATUSES: tuple[RequestStatus, ...] = (_Q.SUCCEEDED, _Q.FAILED, _Q.REJECTED, _Q.DENIED,
                                                     _Q.EXPIRED)
