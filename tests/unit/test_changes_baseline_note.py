"""What ``jumpsync changes`` says of a first sync, whose rows history does not list (cli.changes.baseline_note)."""

from __future__ import annotations

from datetime import datetime, timezone

from cli.changes import baseline_note
from cli.output import full_time
from models.read_records import BaselineRecord

AT = datetime(2026, 12, 3, 9, 13, 43, tzinfo=timezone.utc)


def test_the_first_sync_says_what_it_stored_and_that_history_starts_there():
    first = BaselineRecord(1, AT, first=True, resources={"user": 1200, "admin": 1, "group": 40}, grants=2310)
    assert baseline_note(first, drawn=False) == (
        f"first sync (run 1, {full_time(AT)}) stored 1,200 users, 1 admin, 40 groups and 2,310 grants: "
        "history starts there (resources and grants list them)")


def test_a_type_synced_first_later_is_named():
    later = BaselineRecord(7, AT, first=False, resources={"role": 4}, grants=1)
    assert baseline_note(later, drawn=False).startswith("first sync of roles (run 7, ")
    assert "stored 4 roles and 1 grant:" in baseline_note(later, drawn=False)
    grants_only = BaselineRecord(8, AT, first=False, resources={}, grants=3)
    assert baseline_note(grants_only, drawn=False).startswith("first sync of grants (run 8, ")
    assert "stored 3 grants:" in baseline_note(grants_only, drawn=False)
