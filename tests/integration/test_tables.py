"""What ``jumpsync`` tables look like at 80 and 160 columns and in a pipe, through the CLI on a real database.

At 80 columns an id, email or status is shown whole on one line or not at all (a line on stderr says which
columns are left out); a name wraps between words. A pipe gets tab-separated rows with a header and full values;
``--wide`` / ``-o wide`` shows every column.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from connector.records import ResourceRecord
from models.store import ResourceWriter
from tests.support.databases import add_connector

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
PEOPLE = [("5f3c0a1b2c3d4e5f60718293", "Alexandra Konstantinopoulou", "alexandra.konstantinopoulou@example.com",
           "active"),
          ("5f3c0a1b2c3d4e5f60718294", "Bo Li", "bo.li@example.com", "suspended"),
          ("5f3c0a1b2c3d4e5f60718295", "Maximilian Featherstonehaugh", "max.featherstonehaugh@subsidiary.example.org",
           "staged")]


@pytest.fixture
def cli(run, engine):
    cid = add_connector(engine, "acme")
    ResourceWriter(engine, cid, "user", NOW).write([
        ResourceRecord("user", uid, name, email, status, {"username": email.split("@")[0]})
        for uid, name, email, status in PEOPLE])
    return run


def parse(table: str) -> tuple[list[str], list[dict[str, str]]]:
    """A drawn table's header and rows, with folded cells joined again (a row starts where the first column
    has text)."""
    lines = table.rstrip("\n").splitlines()
    header = lines[0]
    names = re.split(r" {2,}", header.strip())  # columns are two spaces apart; a header may hold one
    starts: list[int] = []
    for name in names:
        starts.append(header.index(name, starts[-1] + 1 if starts else 0))
    bounds = list(zip(starts, starts[1:] + [None], strict=True))
    rows: list[dict[str, list[str]]] = []
    for line in lines[2:]:
        parts = [line[a:b].strip() if b else line[a:].strip() for a, b in bounds]
        if parts[0]:
            rows.append({name: [part] for name, part in zip(names, parts, strict=True)})
        else:
            for name, part in zip(names, parts, strict=True):
                rows[-1][name].append(part)
    return names, [{name: "".join(p) for name, p in row.items()} for row in rows]


def test_at_80_columns_ids_are_whole_names_wrap_and_the_columns_left_out_are_named(cli, terminal):
    terminal(80)
    result = cli("resources", "acme")
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    assert "…" not in result.stdout
    names, rows = parse(result.stdout)
    # type is user in every row, deleted is empty, and the 44-character email does not fit beside id and name
    assert names == ["id", "name", "status"]
    assert all(any(p[0] in line for line in result.stdout.splitlines()) for p in PEOPLE)  # never split
    assert {(r["id"], r["status"]) for r in rows} == {(p[0], p[3]) for p in PEOPLE}
    assert {r["name"].replace(" ", "") for r in rows} == {p[1].replace(" ", "") for p in PEOPLE}  # at spaces
    assert ("not shown at 80 columns: type (user in every row), email, deleted (empty) (--wide shows every column)"
            in result.stderr)


def test_at_160_columns_every_column_is_shown_on_one_line_per_row(cli, terminal):
    terminal(160)
    result = cli("resources", "acme")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["type", "id", "name", "email", "status", "deleted"]
    assert len(lines) == 2 + len(PEOPLE)
    names, rows = parse(result.stdout)
    assert {(r["id"], r["name"], r["email"]) for r in rows} == {p[:3] for p in PEOPLE}


def test_wide_shows_every_column_at_80(cli, terminal):
    terminal(80)
    for option in (["--wide"], ["-o", "wide"]):
        result = cli("resources", "acme", *option)
        assert result.stdout.splitlines()[0].split() == ["type", "id", "name", "email", "status", "deleted"]
        assert all(p[2] in result.stdout and p[1] in result.stdout for p in PEOPLE)


def test_a_pipe_gets_tab_separated_rows_with_a_header(cli):
    result = cli("resources", "acme")
    lines = result.stdout.splitlines()
    assert lines[0] == "type\tid\tname\temail\tstatus\tdeleted"
    as_json = json.loads(cli("resources", "acme", "--json").stdout)
    assert [line.split("\t") for line in lines[1:]] == [
        [r["type"], r["id"], r["name"], r["email"], r["status"], ""] for r in as_json]
    assert "─" not in result.stdout and "│" not in result.stdout
    drawn = cli("resources", "acme", "-o", "table")  # asked for: a table even in a pipe
    assert "─" in drawn.stdout and "\t" not in drawn.stdout


def test_requests_at_80_columns_keep_the_id_whole_and_show_local_times(cli, engine, terminal, monkeypatch):
    import time

    from provisioning import requests as prequests

    monkeypatch.setenv("TZ", "America/Sao_Paulo")
    time.tzset()
    try:
        for n in range(3):
            prequests.accept_malformed(engine, {"connector": "acme", "action": "user.suspend"},
                                       f"reason {n}: " + "a long explanation " * 6)
        recorded = prequests.listing(engine)
        terminal(80)
        result = cli("requests")
        assert all(len(line) <= 80 for line in result.stdout.splitlines())
        names, rows = parse(result.stdout)
        assert names[:3] == ["id", "action", "status"] and "error" not in names
        assert "connector (acme in every row)" in result.stderr
        assert [r["id"] for r in rows] == [r["id"] for r in recorded]
        assert "error" in result.stderr.splitlines()[-1]  # said, not silent
        local = datetime.fromisoformat(recorded[0]["created_at"]).astimezone()
        terminal(160)
        wide = parse(cli("requests").stdout)
        assert "error" in wide[0] and wide[1][0]["error"].startswith("reason 2: a long")
        if local.date() == datetime.now().astimezone().date():
            assert wide[1][0]["created"] == local.strftime("%H:%M:%S")
        monkeypatch.setenv("TTY_COMPATIBLE", "0")
        piped = cli("requests", "--connector", "ACME")
        assert piped.stdout.splitlines()[0] == "id\tconnector\taction\tstatus\ttarget\tattempts\tcreated\terror"
        assert piped.stdout.splitlines()[1].split("\t")[6] == local.isoformat(timespec="seconds")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_status_at_80_columns(cli, terminal):
    terminal(80)
    result = cli("status")
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    names, rows = parse(result.stdout)
    # never run: the empty columns go first, and then the rest fits
    assert names == ["connector", "last run", "next sync", "resources", "grants", "events", "report/export"]
    assert result.stderr.splitlines()[-1] == ("not shown at 80 columns: finished (empty), last success (empty), "
                                              "provisioning (empty), error (empty) (--wide shows every column)")
    assert [(r["connector"], r["last run"]) for r in rows] == [("acme", "never")]
    terminal(160)
    names, _ = parse(cli("status").stdout)
    assert names[:6] == ["connector", "last run", "finished", "last success", "next sync", "resources"]
