"""The API's answer models keep up with the shapes they stand for: FastAPI drops every key a response model does
not declare, so a key added to ``provisioning.requests.view`` must be added to ``RequestView`` too."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

from httpapi.schemas import RequestView, SubmitRequest
from provisioning.requests import view


def test_request_view_declares_every_key_of_the_request_object():
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    row = SimpleNamespace(id="a" * 32, connector="acme", action="group.add-member", params={"group": "g", "user": "u"},
                          idempotency_key=None, requested_by="token:desk", on_behalf_of=None, status="pending",
                          dry_run=False, attempts=0, last_error=None, result=None, created_at=now, updated_at=now,
                          started_at=None, finished_at=None)
    shown = view(row)
    assert list(RequestView.model_fields) == list(shown), "add the new key of view() to httpapi.schemas.RequestView"
    assert RequestView.model_validate(shown).model_dump(mode="json") == shown


def test_the_body_cannot_say_who_asks():
    assert "requested_by" not in SubmitRequest.model_fields
    assert SubmitRequest.model_config.get("extra") == "forbid"
