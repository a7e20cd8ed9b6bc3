"""``jumpsync up`` sends each known connector's first sync as someone asking for it (``cli.up.recovery``): on the
sync queue at the asked step, ahead of beat's scheduled triggers, and with no result kept."""

from __future__ import annotations

from cli.up import recovery
from models.states import Trigger
from worker.celery_app import app
from worker.names import Priority, Queue, TaskName


def test_a_first_sync_goes_at_the_asked_step(monkeypatch):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(app, "send_task", lambda name, **options: sent.append((name, options))
                        or type("Sent", (), {"id": "t1"})())
    recovery._send_sync("acme")
    [(name, options)] = sent
    assert name == TaskName.SYNC_CONNECTOR and options["args"] == ["acme"]
    assert options["kwargs"] == {"trigger": Trigger.MANUAL}
    assert options["queue"] == Queue.SYNC and options["priority"] == int(Priority.ASKED)
    assert options["ignore_result"] is True
