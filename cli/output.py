"""How every command prints rows: a table for a person at a terminal, tab-separated text for a pipe, JSON or CSV on
ask. Every command that lists rows takes the same ``-o/--output`` (kubectl's meaning: the format, never a file).

| output | when | what |
|---|---|---|
| ``table`` | stdout is a terminal (default) | columns fitted to the width; redundant and less important ones left out |
| ``wide`` | ``--wide`` / ``-o wide`` | every column; lines may be longer than the terminal |
| ``tsv`` | stdout is not a terminal (default), ``-o tsv`` | a header line, then one line per row, full values, no styling |
| ``json`` | ``--json`` / ``-o json`` | the command's documented JSON (docs/cli-json.md) |
| ``csv`` | ``-o csv`` | a header, then one row per line (Python's ``csv``), formula-safe as the export's |

A value is shown whole or not at all: a column is either one unbreakable value per row (an id, an email, a
status, a time: ``Col`` default, never narrowed, never split) or prose (``Col(wrap=True)``: a name, an error)
that wraps between words, so an id or email inside it stays whole too. When a table does not fit, columns are
left out: first those that say nothing (empty in every row, or one value in every row, as ``type`` under
``--type user``), then the highest ``drop``; a line on stderr names them, and ``--wide`` shows them. Only when
the columns that stay are wider than the terminal together is a line longer than it. Times are local: ``09:13:43`` today, ``2026-12-03 09:13`` before; in TSV and CSV the full ISO time
with its offset, which sorts. Notes such as "… and 5 more" go to stderr in TSV, CSV and JSON, so that stdout
holds rows only.

Only a table at a terminal is ever cut short (``TABLE_ROWS``, and the report's first findings of each kind),
and it says so below the rows; a pipe, a file and every machine format get every row.

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
from typing import IO, Any, Optional

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
    csv = "csv"


#: Outputs for programs, not people: every row, notes on stderr.
MACHINE = frozenset({Output.tsv, Output.json, Output.csv})

OutputOption = typer.Option(None, "--output", "-o", help="table, wide, tsv, json or csv (default: table at a "
                                                            "terminal, tsv in a pipe).")
WideOption = typer.Option(False, "--wide", help="Every column (same as -o wide).")
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
    """One column. By default a row's value is one unbreakable token (an id, an email, a status, a time): on one
    line, never narrowed, never split, so a double-click copies it whole. ``wrap``: prose (a name, an error)
    that wraps between words; a word is split only when it is longer than ``WORD_MAX``. ``drop``: at a narrow
    terminal the highest is left out first; 0 stays unless it says nothing (empty in every row). ``category``:
    the row's kind (``type``), which says nothing when every row has the same value; so does a column with a
    ``drop`` that has one value in every row. Those go first (the note names the value). ``time``: an ISO time
    shown local and short. ``style``: the Rich style for a value (a status's colour)."""

    header: str
    drop: int = 0
    wrap: bool = False
    category: bool = False
    time: bool = False
    style: Optional[Callable[[str], str]] = None

    @property
    def key(self) -> str:
        """The header in TSV and CSV: one word."""
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
#: A wrapping column is never narrower than this (or its header's longest word).
MIN_WIDTH = 8
#: The width a wrapping column (an error) asks for before columns are left out; it takes more when there is room.
WRAP_WIDTH = 30
#: A word in a wrapping column up to this long (an id, an email) is never split; a longer one (a URL) folds.
WORD_MAX = 48

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Measure:
    """What fitting needs to know of a column's cells. ``natural``: its width on one line. ``floor``: the
    narrowest it may be (``natural`` for a token column; its longest word for a wrapping one). ``same``: the
    one value of every row, when there are several and all have the same ("" when all are empty), else None."""

    natural: int
    floor: int
    same: Optional[str]


def measure(cols: Sequence[Col], texts: Sequence[Sequence[Text]], show_header: bool = True) -> list[Measure]:
    """Each column's ``Measure`` over the rows' cell texts."""
    found = []
    for i, col in enumerate(cols):
        cells = [row[i] for row in texts]
        head = cell_len(col.header) if show_header else 1
        natural = max([head] + [t.cell_len for t in cells])
        if col.wrap:
            words = [cell_len(w) for t in cells for w in _WORD.findall(t.plain)] + [
                cell_len(w) for w in col.header.split()]
            floor = min(natural, max([MIN_WIDTH] + [min(w, WORD_MAX) for w in words]))
        else:
            floor = natural
        values = {t.plain for t in cells}
        same = values.pop() if len(values) == 1 and (len(cells) > 1 or "" in values) else None
        found.append(Measure(natural, floor, same))
    return found


def _redundant(col: Col, found: Measure) -> bool:
    """A column that tells nothing the note about it cannot: empty in every row, or the same value in every row
    of a column that may be left out (a ``category``, or one with a ``drop``)."""
    return found.same == "" or (found.same is not None and (col.category or col.drop > 0))


def fit(cols: Sequence[Col], found: Sequence[Measure], width: int) -> list[Optional[int]]:
    """Each column's width at ``width`` characters, None for one left out.

    A wrapping column asks for ``WRAP_WIDTH`` at most (more if its longest word is longer). Columns are left out
    while the table is too wide: redundant ones first (``_redundant``), then highest ``drop`` first; a column
    with ``drop=0`` that says something stays, and one that says something comes back if there is room for it
    after later ones went. Room left over widens the wrapping columns to their natural width;
    if the table is still too wide they narrow to their longest word. Token columns never narrow: if what stays
    is still wider than ``width``, the lines are longer than the terminal, and no value is split.
    """
    def total(widths: dict[int, int]) -> int:
        return sum(widths.values()) + GAP * (len(widths) - 1)

    asked = {i: min(m.natural, max(WRAP_WIDTH, m.floor)) if col.wrap else m.natural
             for i, (col, m) in enumerate(zip(cols, found, strict=True))}
    widths = dict(asked)
    order = sorted((i for i, col in enumerate(cols) if col.drop or _redundant(col, found[i])),
                   key=lambda i: (not _redundant(cols[i], found[i]), -cols[i].drop, -i))
    dropped = []
    for i in order:
        if total(widths) <= width:
            break
        dropped.append(i)
        del widths[i]
    for i in reversed(dropped[:-1]):  # one left out early comes back if leaving out later ones made room for it
        if not _redundant(cols[i], found[i]) and total(widths | {i: asked[i]}) <= width:
            widths[i] = asked[i]
    wrapping = [i for i in widths if cols[i].wrap]
    for i in wrapping:
        widths[i] = min(found[i].natural, widths[i] + max(0, width - total(widths)))
    while total(widths) > width:
        shrinkable = [i for i in wrapping if widths[i] > found[i].floor]
        if not shrinkable:
            break
        widths[max(shrinkable, key=lambda i: (widths[i], i))] -= 1  # the widest, a character at a time
    return [widths.get(i) for i in range(len(cols))]


def left_out(cols: Sequence[Col], found: Sequence[Measure], widths: Sequence[Optional[int]]) -> list[str]:
    """The columns a table left out, as its note names them: ``type (user in every row)``, ``error (empty)``."""
    named = []
    for col, m, w in zip(cols, found, widths, strict=True):
        if w is None:
            named.append(f"{col.header} (empty)" if m.same == "" else
                         f"{col.header} ({m.same} in every row)" if m.same is not None else col.header)
    return named


# --- printing -----------------------------------------------------------------------------------------------------

def print_rows(cols: Sequence[Col], rows: Iterable[Sequence[Any]], output: Output, *,
               show_header: bool = True, console: Optional[Console] = None) -> None:
    """Print ``rows`` (one value per column) as ``output`` asks: table, wide, tsv or csv (json is the caller's).
    A table that leaves columns out says which on stderr."""
    rows = [list(row) for row in rows]
    out = console or stdout()
    if output is Output.tsv:
        lines = ["\t".join(col.key for col in cols)] if show_header else []
        lines += ["\t".join(_tsv_value(col, value) for col, value in zip(cols, row, strict=False)) for row in rows]
        out.file.write("".join(line + "\n" for line in lines))
        return
    if output is Output.csv:
        _write_csv(out.file, cols, rows, show_header)
        return
    if output is Output.json:
        raise ValueError("JSON is the command's own document, not rows")
    texts = [[_table_value(col, row[i] if i < len(row) else None) for i, col in enumerate(cols)] for row in rows]
    found = measure(cols, texts, show_header)
    wide = output is Output.wide
    terminal = out.width
    widths = [m.natural for m in found] if wide else fit(cols, found, terminal - 1)  # - 1: the last padding
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                  show_header=show_header, header_style="bold")
    kept = [i for i, w in enumerate(widths) if w is not None]
    for i in kept:
        col = cols[i]
        table.add_column(col.header, width=widths[i], min_width=widths[i], no_wrap=not col.wrap,
                         overflow="fold" if col.wrap else "ignore")
    for row in texts:
        table.add_row(*(row[i] for i in kept))
    # Never narrower than the columns: rich would squeeze them, and a token column must not split.
    out.width = max(out.width, sum(widths[i] or 0 for i in kept) + GAP * len(kept))
    out.print(table, crop=False)
    missing = left_out(cols, found, widths)
    if missing:
        stderr().print(cell(f"not shown at {terminal} columns: {', '.join(missing)} (--wide shows every column)"))


def _write_csv(file: IO[str], cols: Sequence[Col], rows: Sequence[Sequence[Any]], show_header: bool) -> None:
    """Rows as CSV with the export's rules (access.render.csv_cell: no spreadsheet formulas; booleans
    ``true``/``false``); times in full, as in TSV."""
    import csv

    from access.render import csv_cell

    writer = csv.writer(file)
    if show_header:
        writer.writerow([col.key for col in cols])
    writer.writerows([csv_cell(full_time(value) if col.time else value) for col, value in zip(cols, row, strict=False)]
                     for row in rows)


def note(text: str, output: Output, console: Optional[Console] = None) -> None:
    """A line about the rows ("… and 5 more"): below the table, or on stderr when stdout holds rows for a program
    (TSV, CSV, JSON). Shown literally (it may hold synced names)."""
    target = stderr() if output in MACHINE else (console or stdout())
    target.print(cell(text))


#: Rows a table at a terminal draws at most. Rich lays out every row of a table before drawing it, and a longer
#: list is read in a pipe or a machine format anyway, which get every row.
TABLE_ROWS = 200


def capped(output: Output) -> bool:
    """Whether rows are cut short (to ``TABLE_ROWS``, saying so below them): only a table drawn at a terminal,
    never a pipe or a file (whatever ``-o``) and never a machine format."""
    return output in (Output.table, Output.wide) and stdout().is_terminal


def rows_shown(rows: list, output: Output) -> list:
    """The rows a command shows: at most ``TABLE_ROWS`` in a table at a terminal, all of them otherwise."""
    return rows[:TABLE_ROWS] if capped(output) else rows
