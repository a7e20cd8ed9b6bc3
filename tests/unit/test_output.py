"""cli.output: which columns a width keeps, how times read, what a pipe gets."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

from rich.console import Console

from cli.output import Col, Output, choose, fit, full_time, print_rows, short_time

COLS = (Col("id", identity=True), Col("name", identity=True), Col("created", time=True, drop=1),
        Col("error", wrap=True, drop=2), Col("kind"))


def test_fit_keeps_everything_when_it_fits_and_drops_the_highest_drop_first():
    natural = [24, 12, 8, 40, 5]
    assert fit(COLS, natural, 200) == natural
    # 24+12+8+5 + 4 gaps of 2 = 57: without the error (drop 2) it fits at natural widths
    assert fit(COLS, natural, 57) == [24, 12, 8, None, 5]
    # narrower still: created goes too, then the identity columns narrow (they fold, nothing is lost)
    assert fit(COLS, natural, 47) == [24, 12, None, None, 5]
    narrow = fit(COLS, natural, 30)
    assert narrow[2] is None and narrow[3] is None and sum(w for w in narrow if w) + 2 * 2 <= 30
    assert narrow[4] == 5  # "kind" is not identity but its natural width is below MIN_WIDTH: kept whole


def test_short_time_is_local_and_leaves_out_todays_date():
    now = datetime(2026, 12, 4, 15, 0, tzinfo=timezone.utc).astimezone()
    today = (now - timedelta(hours=1)).astimezone(timezone.utc).isoformat()
    assert short_time(today, now) == (now - timedelta(hours=1)).strftime("%H:%M:%S")
    assert short_time("2026-11-30T08:05:09Z", now) == datetime(2026, 11, 30, 8, 5, 9, tzinfo=timezone.utc
                                                               ).astimezone().strftime("%Y-%m-%d %H:%M")
    assert short_time("unknown", now) == "unknown" and short_time(None, now) == ""
    assert full_time("2026-11-30T08:05:09") == datetime(2026, 11, 30, 8, 5, 9, tzinfo=timezone.utc
                                                        ).astimezone().isoformat()


def test_local_times_follow_the_machines_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert full_time("2026-11-30T08:05:09Z") == "2026-11-30T13:35:09+05:30"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_tsv_has_a_header_full_values_and_no_tabs_or_newlines_inside_a_value():
    out = io.StringIO()
    print_rows(COLS, [("5f01", "A\tB", "2026-11-30T08:05:09Z", "line one\nline two", "x" * 300)], Output.tsv,
               console=Console(file=out))
    header, row = out.getvalue().splitlines()
    assert header == "id\tname\tcreated\terror\tkind"
    assert row.split("\t") == ["5f01", "A\\x09B", full_time("2026-11-30T08:05:09Z"), "line one\\x0aline two",
                               "x" * 300]


def test_a_table_at_a_narrow_width_folds_identity_columns_and_cuts_nothing_of_them():
    out = io.StringIO()
    ident = "5f0000000000000000000a01"
    print_rows(COLS, [(ident, "Alexandra Konstantinopoulou", None, "boom " * 20, "user")], Output.table,
               console=Console(file=out, width=40))
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 40 for line in lines)
    assert "created" not in lines[0] and "error" not in lines[0]
    id_width = lines[0].index("name")
    assert "".join(line[:id_width].strip() for line in lines[2:]) == ident
    assert "…" not in out.getvalue()


def test_wide_shows_every_column_whatever_the_width():
    out = io.StringIO()
    print_rows(COLS, [("5f01", "Alice", "2026-11-30T08:05:09Z", "an error " * 10, "user")], Output.wide,
               console=Console(file=out, width=40))
    assert out.getvalue().splitlines()[0].split() == ["id", "name", "created", "error", "kind"]
    assert ("an error " * 10).strip() in out.getvalue()


def test_choose_prefers_the_explicit_output(monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    assert choose() is Output.tsv
    assert choose(as_json=True) is Output.json and choose(wide=True) is Output.wide
    assert choose(Output.table, as_json=True) is Output.table
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    assert choose() is Output.table
