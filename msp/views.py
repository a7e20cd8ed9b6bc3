"""What the ``msp_organizations`` rows mean to the rest of jumpsync: the connectors they make, and what
``jumpsync msp`` shows of each key's listing and organisations."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from config.connector import ConnectorConfig
from config.msp import MspConfig
from config.settings import FileConfig, split_discovered
from models.tables import MspListing, MspOrganization

log = logging.getLogger(__name__)


def discovered_connectors(engine: Engine, file: FileConfig) -> list[ConnectorConfig]:
    """The connectors of the organisations the file's ``[[msp]]`` tables discovered: listed (not removed) and
    taken by the table's ``include``/``exclude``, in table order, then name order. A row no connector can be
    made of (it would fail validation) is left out with a warning: one bad row must not stop every process."""
    if not file.msp:
        return []
    with Session(engine) as session:
        rows = session.execute(select(MspOrganization).where(
            col(MspOrganization.msp).in_([m.name for m in file.msp]), col(MspOrganization.removed_at).is_(None))
                               .order_by(col(MspOrganization.connector))).scalars().all()
    return _connectors(file, rows)


def _connectors(file: FileConfig, rows: Sequence[MspOrganization]) -> list[ConnectorConfig]:
    """``discovered_connectors`` of rows read, in connector-name order."""
    tables = {msp.name: msp for msp in file.msp}
    order = {name: index for index, name in enumerate(tables)}
    connectors = []
    for row in sorted((row for row in rows if row.msp in tables and row.removed_at is None),
                      key=lambda row: order[row.msp]):
        msp = tables[row.msp]
        if not msp.takes(row.org_id, row.display_name):
            continue
        try:
            connectors.append(msp.connector_for(row.connector, row.org_id))
        except ValidationError as exc:
            log.warning("msp organisation left out: %s", exc.errors()[0]["msg"],
                        extra={"msp": row.msp, "connector": row.connector})
    return connectors


def organizations(engine: Engine, file: FileConfig) -> list[dict]:
    """What ``jumpsync msp`` shows: each ``[[msp]]`` table's last listing and its organisations, each with its
    connector and state: ``syncing``, ``excluded`` (by include/exclude), ``shadowed`` (synced by another
    connector: ``shadowed_by`` says which), ``missing`` (not in the last listing, still syncing) or ``removed``."""
    with Session(engine) as session:
        rows = session.execute(select(MspOrganization).order_by(col(MspOrganization.connector))).scalars().all()
        listings = {row.msp: row for row in session.execute(select(MspListing)).scalars()}
    _, shadowed = split_discovered(file, _connectors(file, rows))
    out = []
    for msp in file.msp:
        listing = listings.get(msp.name)
        out.append({
            "name": msp.name,
            "listing": None if listing is None else {
                "listed_at": listing.listed_at.isoformat(), "outcome": listing.outcome,
                "error": listing.error, "organizations": listing.organizations, "requests": listing.requests},
            "organizations": [{
                "connector": row.connector, "org_id": row.org_id, "display_name": row.display_name,
                "state": _state(msp, row, shadowed), "shadowed_by": shadowed.get(row.connector),
                "first_seen_at": row.first_seen_at.isoformat(),
                "last_seen_at": row.last_seen_at.isoformat(),
            } for row in rows if row.msp == msp.name],
        })
    return out


def _state(msp: MspConfig, row: MspOrganization, shadowed: dict[str, str]) -> str:
    if row.removed_at is not None:
        return "removed"
    if not msp.takes(row.org_id, row.display_name):
        return "excluded"
    if row.connector in shadowed:
        return "shadowed"
    return "missing" if row.missing_since is not None else "syncing"


def listed_since(table: dict, since: datetime) -> bool:
    """Whether an ``organizations`` entry's last listing (ok or failed) is from ``since`` or later."""
    listing = table["listing"]
    return listing is not None and datetime.fromisoformat(listing["listed_at"]) >= since


def listing_since(engine: Engine, file: FileConfig, msp: str, since: datetime) -> dict | None:
    """The ``organizations`` entry of ``msp`` if it was listed at ``since`` or later (what ``msp discover
    --wait`` waits for)."""
    table = next(t for t in organizations(engine, file) if t["name"] == msp)
    return table if listed_since(table, since) else None
