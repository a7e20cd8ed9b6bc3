"""``worker.waiting``: what a wait says about a task that ended without recording its outcome."""

from __future__ import annotations

import pytest

from config.settings import ConfigError
from worker import waiting


def test_the_error_names_its_type_and_hides_url_passwords():
    error = RuntimeError("could not connect to postgresql://jumpsync:S3cretPw@db:5432/jumpsync")
    text = waiting.describe("FAILURE", error)
    assert text == "RuntimeError: could not connect to postgresql://jumpsync:***@db:5432/jumpsync"
    assert waiting.describe("FAILURE", ConfigError("unknown connector 'a'")) == "ConfigError: unknown connector 'a'"
    assert waiting.describe("REVOKED", None) == "task revoked"


def test_a_record_found_after_the_failure_wins(monkeypatch):
    """A task may record its outcome and fail after: what the database holds is the answer."""
    reads = iter([None, {"status": "failed"}])
    monkeypatch.setattr(waiting, "ended_without_record", lambda task_id, nothing_recorded=None: "boom")
    assert waiting.wait_for(lambda: next(reads), "t1", timeout=5) == {"status": "failed"}


def test_a_failed_task_ends_the_wait_at_once(monkeypatch):
    monkeypatch.setattr(waiting, "ended_without_record",
                        lambda task_id, nothing_recorded=None: "ConfigError: unknown connector 'a'")
    with pytest.raises(waiting.TaskFailed) as failed:
        waiting.wait_for(lambda: None, "t1", timeout=3600)
    assert failed.value.task_id == "t1" and str(failed.value) == "ConfigError: unknown connector 'a'"


def test_without_a_task_only_the_timeout_ends_it():
    assert waiting.wait_for(lambda: None, None, timeout=0.3, poll=0.1) is None
