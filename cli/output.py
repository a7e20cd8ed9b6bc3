"""How every command prints rows: a table for a person at a terminal, tab-separated text for a pipe, JSON on ask.

| output | when | what |
|---|---|---|
| ``table`` | stdout is a terminal (default) | columns fitted to the width; less important ones dropped first |
| ``wide`` | ``--wide`` / ``-o wide`` | every column, nothing shortened; lines may be longer than the terminal |
| ``tsv`` | stdout is not a terminal (default), ``-o tsv`` | a header line, then one line per row, full values, no styling |
| ``json`` | ``--json`` / ``-o json`` | the command's documented JSON (docs/cli-json.md) |

A column that identifies a row (id, email, name, status, connector: ``Col(identity=True)``) is never cut: when the
terminal is too narrow it folds onto a second line. Other columns are dropped (highest ``drop`` first) and then
shortened. Times are local: ``09:13:43`` today, ``2026-12-03 09:13`` before; in TSV the full ISO time with its
offset, which sorts. Notes such as "… and 5 more" go to stderr in TSV, so that a pipe reads rows only.

Names and errors are data from JumpCloud (or from whoever filed a request): a name like ``[red]x`` is not Rich
markup, and control characters (an ANSI escape in a display name) never reach the terminal (``cell``). JSON needs
none of this: the JSON encoder escapes control characters.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from models.columns import as_utc

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def cell(value: object, limit: int | None = None) -> Text:
    """Literal text for a table cell: no markup, control characters shown as \\xNN, optionally shortened."""
    text = "" if value is None else str(value)
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return Text(text)


class Output(str, enum.Enum):
    table = "table"
    wide = "wide"
    tsv = "tsv"
    json = "json"


OutputOption = typer.Option(None, "--output", "-o", help="table, wide, tsv or json (default: table at a terminal, "
                                                            "tsv in a pipe).")
WideOption = typer.Option(False, "--wide", help="Every column, nothing shortened (same as -o wide).")
JsonOption = typer.Option(False, "--json", help="JSON (same as -o json).")


def stdout() -> Console:
    """The console for rows; made on each use so that COLUMNS and TTY_COMPATIBLE are read when the command runs.
    ``NO_COLOR`` turns all styling off (bold headers too)."""
    return Console(highlight=False, color_system=None if os.environ.get("NO_COLOR") else "auto")


def stderr() -> Console:
    """The console for errors and notes: never wrapped at the terminal's width, so a message stays one line."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def choose(output: Optional[Output] = None, *, wide: bool = False, as_json: bool = False) -> Output:
    """The output the options and the terminal ask for (``-o`` wins over ``--json`` and ``--wide``)."""
    if output is not None:
        return output
    if as_json:
        return Output.json
    if wide:
        return Output.wide
    return Output.table if stdout().is_terminal else Output.tsv


@dataclass(frozen=True)
class Col:
    """One column. ``identity``: never cut, folds instead. ``drop``: 0 is always shown; at a narrow terminal the
    highest is dropped first. ``wrap``: long text (an error) wraps rather than ends in "…". ``time``: an ISO
    time shown local and short. ``style``: the Rich style for a value (a status's colour)."""

    header: str
    identity: bool = False
    drop: int = 0
    wrap: bool = False
    time: bool = False
    style: Optional[Callable[[str], str]] = None

    @property
    def tsv_header(self) -> str:
        return self.header.replace(" ", "_").replace("/", "_")


#: Status colours; a status not named here (failed, rejected, partial…) is red.
STATUS_COLOUR = {"succeeded": "green", "active": "green", "current": "green", "pending": "yellow",
                 "running": "yellow", "skipped": "yellow", "partial": "yellow", "never": "yellow", "staged": "yellow",
                 "suspended": "yellow", "stale": "yellow", "deleted": "red", "quiet": "green", "applied": "green",
                 "waiting": "yellow", "off": "yellow", "syncing": "green", "missing": "yellow", "excluded": "yellow",
                 "shadowed": "yellow", "awaiting_approval": "yellow"}


def status_style(text: str) -> str:
    """The colour of a status cell, by its first word (``succeeded #12``)."""
    return STATUS_COLOUR.get(text.split(" ", 1)[0].rstrip(","), "red")


# --- values -------------------------------------------------------------------------------------------------------

def _parse_time(value: Any) -> Optional[datetime]:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return as_utc(moment).astimezone()  # text without an offset (a JSON field, a typed value) reads as UTC


def short_time(value: Any, now: Optional[datetime] = None) -> str:
    """``09:13:43`` for today (local), ``2026-12-03 09:13`` for another day; text that is no time as it is."""
    if value in (None, ""):
        return ""
    moment = _parse_time(value)
    if moment is None:
        return str(value)
    today = (now or datetime.now().astimezone()).date()
    return moment.strftime("%H:%M:%S" if moment.date() == today else "%Y-%m-%d %H:%M")


def full_time(value: Any) -> str:
    """The local time with its offset, to the second: ``2026-12-04T09:13:43+01:00``."""
    if value in (None, ""):
        return ""
    moment = _parse_time(value)
    return str(value) if moment is None else moment.isoformat(timespec="seconds")


_TSV_UNSAFE = re.compile(r"[\t\n\r]")


def _tsv_value(col: Col, value: Any) -> str:
    text = full_time(value) if col.time else ("" if value is None else str(value))
    return _TSV_UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", cell(text).plain)


def _table_value(col: Col, value: Any) -> Text:
    text = cell(short_time(value) if col.time else value)
    if col.style is not None and text.plain:
        text.stylize(col.style(text.plain))
    return text


# --- fitting ------------------------------------------------------------------------------------------------------

#: Between two columns: one space of padding and the (blank) column separator of ``box.SIMPLE_HEAD``.
GAP = 2
#: A column that is shortened keeps at least this many characters (or its header's).
MIN_WIDTH = 8
#: The width a wrapping column (an error) asks for before columns are dropped; it takes more when there is room.
WRAP_WIDTH = 30


def fit(cols: Sequence[Col], natural: Sequence[int], width: int) -> list[Optional[int]]:
    """Each column's width at ``width`` characters, None for a dropped one.

    A ``wrap`` column asks for ``WRAP_WIDTH`` at most (it wraps). Columns are dropped, highest ``drop`` first,
    until the rest fit or only those with ``drop=0`` are left; room left over widens the wrap columns to their
    natural width. Then the widest columns that are not identity are shortened (to ``MIN_WIDTH``), and last
    identity columns are narrowed (they fold, so nothing of them is lost).
    """
    def total(widths: dict[int, int]) -> int:
        return sum(widths.values()) + GAP * (len(widths) - 1)

    widths = {i: min(natural[i], WRAP_WIDTH) if col.wrap else natural[i] for i, col in enumerate(cols)}
    for i in sorted((i for i, col in enumerate(cols) if col.drop), key=lambda i: (-cols[i].drop, -i)):
        if total(widths) <= width:
            break
        del widths[i]
    for i in (i for i in widths if cols[i].wrap):
        widths[i] = min(natural[i], widths[i] + max(0, width - total(widths)))
    for group in ([i for i in widths if not cols[i].identity], [i for i in widths if cols[i].identity]):
        while total(widths) > width:
            floor = {i: min(natural[i], max(MIN_WIDTH, cell_len(cols[i].header))) for i in group}
            shrinkable = [i for i in group if widths[i] > floor[i]]
            if not shrinkable:
                break
            widths[max(shrinkable, key=lambda i: (widths[i], i))] -= 1  # the widest, a character at a time
    return [widths.get(i) for i in range(len(cols))]


# --- printing -----------------------------------------------------------------------------------------------------

def print_rows(cols: Sequence[Col], rows: Iterable[Sequence[Any]], output: Output, *,
               show_header: bool = True, console: Optional[Console] = None) -> None:
    """Print ``rows`` (one value per column) as ``output`` asks: table, wide or tsv (json is the caller's)."""
    rows = [list(row) for row in rows]
    out = console or stdout()
    if output is Output.tsv:
        lines = ["\t".join(col.tsv_header for col in cols)] if show_header else []
        lines += ["\t".join(_tsv_value(col, value) for col, value in zip(cols, row, strict=False)) for row in rows]
        out.file.write("".join(line + "\n" for line in lines))
        return
    texts = [[_table_value(col, value) for col, value in zip(cols, row, strict=False)] for row in rows]
    natural = [max([cell_len(col.header) if show_header else 1] + [t.cell_len for t in column])
               for col, column in zip(cols, zip(*texts, strict=False) if texts else [()] * len(cols), strict=False)]
    wide = output is Output.wide
    widths = natural if wide else fit(cols, natural, out.width - 1)  # - 1: the last column's padding
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                  show_header=show_header, header_style="bold")
    kept = [i for i, w in enumerate(widths) if w is not None]
    for i in kept:
        col = cols[i]
        folds = col.identity or col.wrap or wide
        table.add_column(col.header, width=widths[i], no_wrap=not folds, overflow="fold" if folds else "ellipsis")
    for row in texts:
        table.add_row(*(row[i] for i in kept))
    if wide:  # as wide as the rows are: the terminal wraps long lines, nothing is cut
        out.width = max(out.width, sum(widths[i] or 0 for i in kept) + GAP * len(kept))
    out.print(table, crop=not wide)


def note(text: str, output: Output, console: Optional[Console] = None) -> None:
    """A line about the rows ("… and 5 more"): below the table, or on stderr when the rows go to a pipe. Shown
    literally (it may hold synced names)."""
    target = stderr() if output is Output.tsv else (console or stdout())
    target.print(cell(text))


#: Rows a table draws at most. Rich lays out every row of a table before drawing it, and a longer list is read
#: with --json or in a pipe anyway; a pipe gets every row.
TABLE_ROWS = 200


def drawn(output: Output) -> bool:
    """Whether rows are drawn as a table (and so at most ``TABLE_ROWS`` of them), not written as TSV or JSON."""
    return output in (Output.table, Output.wide)


def rows_shown(rows: list, output: Output) -> list:
    """The rows a command shows: at most ``TABLE_ROWS`` in a table, all of them otherwise."""
    return rows[:TABLE_ROWS] if drawn(output) else rows
