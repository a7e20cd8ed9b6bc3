"""A part's page ledger: a page is done only once its resources and every one of its resources' grants went to
the writer, in whatever order the hand-overs come (pipeline.checkpoint)."""

from __future__ import annotations

import pytest

from jumpcloud.paging import Page
from pipeline.checkpoint import Checkpointer, PageLedger


def test_a_page_without_grants_is_done_when_its_records_are_handed():
    ledger = PageLedger(with_grants=False)
    ledger.listed(Page(["a", "b"], skip=0, total=4))
    ledger.listed(Page(["c", "d"], skip=2, total=4))
    ledger.handed(2)
    assert ledger.done == {2} and ledger.total == 4


def test_a_page_with_grants_waits_for_the_grants_of_each_resource():
    ledger = PageLedger(with_grants=True)
    ledger.listed(Page(["a", "b"], skip=0, total=2))
    ledger.handed(0)  # its records
    ledger.handed(0)  # the grants of "a"
    assert ledger.done == set()
    ledger.handed(0)  # the grants of "b"
    assert ledger.done == {0}


def test_a_hand_over_of_a_page_not_listed_is_a_bug_not_a_page_done():
    with pytest.raises(KeyError):
        PageLedger(with_grants=False).handed(100)


def test_the_checkpointer_has_news_only_for_pages_done_since_it_saved():
    ledger, checkpointer = PageLedger(with_grants=False), Checkpointer(interval=0)
    assert checkpointer.due() and not checkpointer.news(ledger)
    ledger.listed(Page(["a"], skip=0, total=1))
    ledger.handed(0)
    assert checkpointer.news(ledger)
    checkpointer.saved(ledger)
    assert not checkpointer.news(ledger)
