"""How a table cell names a stored resource: the one rendering of "this id is that group" for every command.

| rendering | where | reads |
|---|---|---|
| ``named(kind, id, name)`` | ``grants``, ``changes``: a table at a terminal | ``group:Engineering`` |
| ``named(..., with_id=True)`` | the same in ``wide`` and ``tsv`` | ``group:Engineering (5f3a…)`` |
| ``name_and_id(name, id)`` | ``access``, ``who-has``, ``report`` (the kind is the column's) | ``Engineering (5f3a…)`` |

A resource the database has no name for (never synced, or not a resource of the connector) reads as its id:
``user:5f3a…``. Names are JumpCloud's data: ``cli.output.cell`` makes them literal when the table is drawn.
JSON output never goes through here; it carries the ids and the names as separate keys (docs/cli-json.md).
"""

from __future__ import annotations


def name_and_id(name: str | None, rid: str) -> str:
    """``Engineering (5f3a…)``; the id alone when there is no name."""
    return f"{name} ({rid})" if name else rid


def named(kind: str, rid: str, name: str | None, *, with_id: bool = False) -> str:
    """``group:Engineering``, or ``group:Engineering (5f3a…)`` ``with_id``; ``group:5f3a…`` without a name."""
    return f"{kind}:{name_and_id(name, rid) if with_id else (name or rid)}"
