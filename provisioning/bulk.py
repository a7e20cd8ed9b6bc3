"""Reading a bulk file of provisioning requests: one request per JSON line or per CSV row.

Plain functions, no database and no broker: ``parse_jsonl(text)`` and ``parse_csv(text)`` return, in file
order, ``(line_no, BulkItem | BulkError)`` for every request line (blank lines are skipped). A line that
cannot be read becomes a ``BulkError`` naming the problem; it never stops the lines after it.

A file never says who asks: ``requested_by`` is the entry point's to record (``cli:<login>``). A line may say
on whose behalf it asks (``on_behalf_of``); a file that names ``requested_by`` anywhere is refused whole
(``RequesterInFile``, naming the lines), before anything is recorded.

JSON lines::

    {"connector": "acme", "action": "group.add-member", "params": {"group": "Engineering", "user": "alice@example.com"}}
    {"connector": "acme", "action": "user.suspend", "params": {"user": "bob"}, "idempotency_key": "HR-1029", "on_behalf_of": "hr"}

CSV: a header with ``connector`` and ``action`` (and optionally ``idempotency_key``, ``on_behalf_of``); every
other column is a parameter, and an empty cell is no parameter at all, so one file can mix actions::

    connector,action,group,user,app,idempotency_key
    acme,group.add-member,Engineering,alice@example.com,,T-1
    acme,app.grant,,alice@example.com,Slack,T-2

Column names are case-insensitive, surrounding spaces are ignored and ``-`` reads as ``_`` (``job-title`` is
the ``job_title`` parameter). Cells are strings, stripped of surrounding spaces.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from config.actions import MAX_TEXT
from config.words import noun, plural

RESERVED_COLUMNS = ("connector", "action", "idempotency_key", "on_behalf_of")
JSONL_KEYS = ("connector", "action", "params", "idempotency_key", "on_behalf_of")
#: What a file may not say: the command records who asks.
REQUESTER_KEY = "requested_by"


class RequesterInFile(ValueError):
    """A file that names ``requested_by``: refused whole, since the requester is not the file's to say."""

    def __init__(self, lines: list[int]) -> None:
        shown = ", ".join(map(str, lines[:10])) + (f" and {len(lines) - 10} more" if len(lines) > 10 else "")
        super().__init__(f"line{'s' if len(lines) > 1 else ''} {shown}: {REQUESTER_KEY} cannot be set in a bulk "
                         "file (jumpsync records who submits it); use on_behalf_of to say whom a request is for")
        self.lines = lines


@dataclass(frozen=True)
class BulkItem:
    """One request read from the file, to be submitted as it is (the core validates the parameters)."""

    connector: str
    action: str
    params: dict[str, Any]
    idempotency_key: str | None = None
    on_behalf_of: str | None = None


@dataclass(frozen=True)
class BulkError:
    """A line that could not be read. ``connector`` and ``action`` are set when the line named them, so that
    it can still be recorded as a rejected request; ``body`` is what was read of it, in the shape of a JSON
    line (``connector``, ``action``, ``params``, ...)."""

    message: str
    connector: str | None = None
    action: str | None = None
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def recordable(self) -> bool:
        return bool(self.connector) and bool(self.action)


Parsed = list[tuple[int, BulkItem | BulkError]]


def normalize_key(name: str) -> str:
    """A parameter or column name as typed by a person: ``Job-Title `` → ``job_title``."""
    return name.strip().lower().replace("-", "_")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _jsonl_line(body: Any) -> BulkItem | BulkError:
    if not isinstance(body, dict):
        return BulkError(f"a line must be a JSON object, not {_json_type(body)}")
    connector, action = _text(body.get("connector")), _text(body.get("action"))
    problems = []
    for key in ("connector", "action"):
        if key not in body:
            problems.append(f"{key} is required")
        elif not _text(body[key]):
            problems.append(f"{key} must be a non-empty string")
    if "params" not in body:
        problems.append("params is required (an object)")
    elif not isinstance(body["params"], dict):
        problems.append(f"params must be an object, not {_json_type(body['params'])}")
    for key in ("idempotency_key", "on_behalf_of"):
        value = body.get(key)
        if value is not None and not _text(value):
            problems.append(f"{key} must be a non-empty string or null")
        elif isinstance(value, str) and len(value) > MAX_TEXT:
            problems.append(f"{key} is longer than {MAX_TEXT} characters")
    unknown = [key for key in body if key not in JSONL_KEYS]
    if unknown:
        problems.append(f"unknown {noun(len(unknown), 'key')} {', '.join(map(repr, unknown))} "
                        f"(known: {', '.join(JSONL_KEYS)})")
    if problems:
        return BulkError("; ".join(problems), connector=connector, action=action, body=body)
    return BulkItem(connector=body["connector"].strip(), action=body["action"].strip(), params=body["params"],
                    idempotency_key=body.get("idempotency_key"), on_behalf_of=body.get("on_behalf_of"))


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def parse_jsonl(text: str) -> Parsed:
    """One request per non-blank line; line numbers count every line of the file from 1. A line (an object)
    with a ``requested_by`` key raises ``RequesterInFile`` once the whole file is read."""
    out: Parsed = []
    naming_requester: list[int] = []
    # Only \n ends a line: str.splitlines would also split at U+2028 and others, which JSON strings may hold.
    for line_no, line in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
        except json.JSONDecodeError as exc:
            out.append((line_no, BulkError(f"not valid JSON: {exc.msg} (column {exc.colno})")))
            continue
        if isinstance(body, dict) and REQUESTER_KEY in body:
            naming_requester.append(line_no)
        out.append((line_no, _jsonl_line(body)))
    if naming_requester:
        raise RequesterInFile(naming_requester)
    return out


def parse_csv(text: str) -> Parsed:
    """One request per non-blank row after the header; a row's number is the file line it starts on.

    A header without ``connector`` and ``action`` (or with a column named twice) is one error on the header
    line, and no row is read; a header with a ``requested_by`` column raises ``RequesterInFile``.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    out: Parsed = []
    header: list[str] | None = None
    header_line = 0
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            out.append((start, BulkError(f"not valid CSV: {exc}")))
            if header is None:
                return out
            continue
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header, header_line = [normalize_key(name) for name in row], start
            if REQUESTER_KEY in header:
                raise RequesterInFile([header_line])
            problem = _header_problem(header)
            if problem:
                return [(header_line, BulkError(problem))]
            continue
        out.append((start, _csv_row(header, row)))
    return out


def _header_problem(header: list[str]) -> str | None:
    missing = [name for name in ("connector", "action") if name not in header]
    if missing:
        return (f"the header has no {' and no '.join(missing)} column (it must name connector, action and the "
                f"parameters; got {', '.join(header)})")
    named = [name for name in header if name]
    twice = sorted({name for name in named if named.count(name) > 1})
    if twice:
        return f"the header names {', '.join(twice)} more than once"
    return None


def _csv_row(header: list[str], row: list[str]) -> BulkItem | BulkError:
    cells = [(name, value.strip()) for name, value in zip(header, row, strict=False)]  # checked below
    given = {name: value for name, value in cells if name and value}
    connector, action = given.get("connector"), given.get("action")
    params = {name: value for name, value in given.items() if name not in RESERVED_COLUMNS}
    body = {key: given[key] for key in RESERVED_COLUMNS if key in given} | {"params": params}

    def error(message: str) -> BulkError:
        return BulkError(message, connector=connector, action=action, body=body)

    if len(row) != len(header):
        return error(f"{plural(len(row), 'cell')}, but the header has {plural(len(header), 'column')}")
    if any(not name and value for name, value in cells):
        return error("a value in a column that has no name in the header")
    missing = [name for name in ("connector", "action") if not given.get(name)]
    if missing:
        return error(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} empty")
    too_long = [key for key in ("idempotency_key", "on_behalf_of") if len(given.get(key, "")) > MAX_TEXT]
    if too_long:
        return error(f"{', '.join(too_long)} longer than {MAX_TEXT} characters")
    assert connector is not None and action is not None  # neither is missing
    return BulkItem(connector=connector, action=action, params=params,
                    idempotency_key=given.get("idempotency_key"), on_behalf_of=given.get("on_behalf_of"))


def parse(text: str, fmt: str) -> Parsed:
    if fmt == "csv":
        return parse_csv(text)
    if fmt == "jsonl":
        return parse_jsonl(text)
    raise ValueError(f"unknown bulk format {fmt!r} (csv or jsonl)")


def format_for(filename: str) -> str | None:
    """The format a file's extension implies, or None."""
    lower = filename.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return None
