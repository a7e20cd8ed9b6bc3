"""cli.output: which columns a width keeps, how times read, what a pipe gets."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

from rich.console import Console

from cli.output import Col, Measure, Output, choose, fit, full_time, print_rows, short_time

COLS = (Col("id"), Col("name", wrap=True), Col("created", time=True, drop=1), Col("error", wrap=True, drop=2),
        Col("kind", category=True))
MEASURED = [Measure(24, 24, None), Measure(12, 9, None), Measure(8, 8, None), Measure(40, 8, None),
            Measure(5, 5, None)]


def test_fit_keeps_everything_when_it_fits_and_drops_the_highest_drop_first():
    natural = [m.natural for m in MEASURED]
    assert fit(COLS, MEASURED, 200) == natural
    # 24+12+8+5 + 4 gaps of 2 = 57: without the error (drop 2) it fits at natural widths
    assert fit(COLS, MEASURED, 57) == [24, 12, 8, None, 5]
    assert fit(COLS, MEASURED, 47) == [24, 12, None, None, 5]
    # narrower still: the name wraps down to its longest word; the id never narrows, the line is longer
    assert fit(COLS, MEASURED, 30) == [24, 9, None, None, 5]


def test_fit_leaves_out_a_column_that_says_nothing_first():
    same_kind = [*MEASURED[:4], Measure(5, 5, "user")]
    # without kind (user in every row) the rest is 24+12+8+30 + 6 = 80
    assert fit(COLS, same_kind, 80) == [24, 12, 8, 30, None]
    # the error had to go as well; kind, which says nothing, stays out although it would fit now
    assert fit(COLS, same_kind, 57) == [24, 12, 8, None, None]
    empty_created = [MEASURED[0], MEASURED[1], Measure(7, 7, ""), MEASURED[3], MEASURED[4]]
    assert fit(COLS, empty_created, 77) == [24, 12, None, 30, 5]  # an empty column goes before the error


def test_fit_brings_back_a_column_when_leaving_out_a_later_one_made_room():
    cols = (Col("id"), Col("name", wrap=True), Col("small", drop=2), Col("big", wrap=True, drop=1))
    measured = [Measure(24, 24, None), Measure(12, 9, None), Measure(8, 8, None), Measure(40, 40, None)]
    # 24+12+8+40 + 6 = 90: small goes first, then big must go too, which leaves room for small again
    assert fit(cols, measured, 60) == [24, 12, 8, None]


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


def test_a_table_at_a_narrow_width_splits_no_id_and_wraps_prose_between_words(capsys):
    out = io.StringIO()
    ident = "5f0000000000000000000a01"
    print_rows(COLS, [(ident, "Alexandra Konstantinopoulou", None, "boom " * 20, "user"),
                      ("5f0000000000000000000a02", "Al", None, "", "admin")], Output.table,
               console=Console(file=out, width=40))
    lines = out.getvalue().splitlines()
    assert "created" not in lines[0] and "error" not in lines[0]
    assert any(ident in line for line in lines)  # on one line, whole
    assert "Konstantinopoulou" in [line.strip() for line in lines]  # wrapped between words, not inside one
    assert "…" not in out.getvalue()
    assert "not shown at 40 columns: created (empty), error (--wide shows every column)" in capsys.readouterr().err


def test_csv_has_every_column_and_row_with_formulas_made_safe():
    out = io.StringIO()
    print_rows(COLS, [("5f01", "=HYPERLINK(1)", "2026-11-30T08:05:09Z", "a, b", "user")], Output.csv,
               console=Console(file=out, width=20))
    assert out.getvalue().splitlines() == ["id,name,created,error,kind",
                                           f"5f01,'=HYPERLINK(1),{full_time('2026-11-30T08:05:09Z')},\"a, b\",user"]


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
