"""The FastAPI application: its routers, its one error shape, and its OpenAPI document (checked in as
docs/openapi.json; tests/integration/test_httpapi.py fails when the served one differs)."""

from __future__ import annotations

from fastapi import FastAPI

from httpapi import errors
from httpapi.routes import approvals, audit, connectors, health, requests

TITLE = "jumpsync"
VERSION = "1"

#: Mounted in this order.
ROUTERS = (health.router, requests.router, approvals.router, audit.router, connectors.router)


def create_app() -> FastAPI:
    app = FastAPI(title=TITLE, version=VERSION,
                  description="Provisioning requests and read-only access views for ticketing systems, portals "
                              "and bots (docs/api.md). Every route but /healthz needs `Authorization: Bearer "
                              "<token>` with the scope it names.",
                  docs_url=None, redoc_url=None)
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
