"""``GET /healthz``: the process answers (no token; for probes). Whether the database and broker answer is
``jumpsync health``'s question, not a liveness probe's: a database outage must not restart every API pod."""

from __future__ import annotations

from fastapi import APIRouter

from httpapi.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers (no token needed)")
def healthz() -> Health:
    return Health(ok=True)
