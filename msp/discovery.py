"""Listing an ``[[msp]]`` key's organisations and recording the listing: new organisations get a connector name,
listed ones are seen, missing ones move toward removal; a failed listing changes nothing but its record."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import Engine, Table, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from config.msp import MspConfig
from config.settings import Settings, parse_duration
from connector.client_factory import ClientFactory, describe_error, make_client
from connector.organizations import Organization, list_organizations
from jumpcloud.client import JumpCloudClient
from models.bulk import bulk_upsert
from models.states import ListingOutcome
from models.tables import Connector, MspListing, MspOrganization, table_of, utcnow
from msp.names import connector_name

log = logging.getLogger(__name__)

_LISTINGS: Table = table_of(MspListing)


@dataclass
class DiscoveryResult:
    msp: str
    outcome: ListingOutcome
    listed: int = 0
    new: list[str] = field(default_factory=list)       # connectors of organisations listed for the first time
    returned: list[str] = field(default_factory=list)  # removed earlier, listed again
    removed: list[str] = field(default_factory=list)   # missing for remove_after: stopped now
    missing: list[str] = field(default_factory=list)   # missing, not yet for remove_after
    renamed: list[str] = field(default_factory=list)   # whose organisation has a new display name (name stays)
    requests: int = 0
    error: str | None = None

    @property
    def changed(self) -> bool:
        """Whether the connectors the organisations make may have changed (beat should look again)."""
        return bool(self.new or self.returned or self.removed or self.renamed)

    def to_dict(self) -> dict:
        return asdict(self)


def discover(engine: Engine, settings: Settings, msp_name: str, *, client_factory: ClientFactory | None = None,
             now: datetime | None = None) -> DiscoveryResult:
    """List the organisations of one ``[[msp]]`` key and record them. Raises ConfigError for an unknown table;
    a failed listing is a ``failed`` result, recorded, with nothing else changed."""
    msp = settings.file.msp_table(msp_name)
    factory = client_factory or (lambda config: make_client(config, settings.broker_url))
    requests = 0
    try:
        client = factory(msp.connector_for(msp.name, None))  # the MSP key and budget, no x-org-id
        try:
            organizations = asyncio.run(_list(client))
        finally:
            requests = client.stats.requests
        reserved = {c.name for c in settings.file.connectors}
        return apply_listing(engine, msp, organizations, reserved, requests=requests, now=now)
    except Exception as exc:  # noqa: BLE001  (a failed listing changes nothing; the next one tries again)
        error = describe_error(exc)
        log.warning("msp listing failed", extra={"msp": msp.name, "error": error})
        _record_listing(engine, msp.name, ListingOutcome.FAILED, error=error, requests=requests, now=now or utcnow())
        return DiscoveryResult(msp.name, ListingOutcome.FAILED, requests=requests, error=error)


async def _list(client: JumpCloudClient) -> list[Organization]:
    async with client:
        return await list_organizations(client)


def apply_listing(engine: Engine, msp: MspConfig, organizations: list[Organization], reserved: set[str], *,
                  requests: int = 0, now: datetime | None = None) -> DiscoveryResult:
    """Record a complete listing: new organisations get a name, listed ones are seen, missing ones move toward
    removal. ``reserved``: names of ``[[connectors]]`` entries, never given to an organisation. Two discoveries
    of one key at once: the one that loses the race on a new name records the listing again."""
    now = now or utcnow()
    for attempt in (1, 2):
        result = DiscoveryResult(msp.name, ListingOutcome.OK, listed=len(organizations), requests=requests)
        try:
            _apply(engine, msp, organizations, reserved, now, result)
            break
        except IntegrityError:
            if attempt == 2:
                raise
    _record_listing(engine, msp.name, ListingOutcome.OK, organizations=len(organizations), requests=requests, now=now)
    if result.changed:
        log.info("msp organisations changed", extra={"msp": msp.name, "new": result.new,
                                                     "returned": result.returned, "removed": result.removed,
                                                     "renamed": result.renamed})
    return result


def _apply(engine: Engine, msp: MspConfig, organizations: list[Organization], reserved: set[str],
           now: datetime, changes: DiscoveryResult) -> None:
    """Write the listing's rows; what changed goes into ``changes``."""
    remove_after = parse_duration(msp.remove_after)
    with Session(engine) as session:
        rows = {row.org_id: row for row in session.execute(select(MspOrganization)
                                                        .where(col(MspOrganization.msp) == msp.name)).scalars()}
        taken = (reserved | set(session.execute(select(col(MspOrganization.connector))).scalars())
                 | set(session.execute(select(col(Connector.name))).scalars()))
        listed = {organization.id for organization in organizations}
        for organization in organizations:
            row = rows.get(organization.id)
            if row is None:
                name = connector_name(msp.name, organization, taken)
                taken.add(name)
                session.add(MspOrganization(msp=msp.name, org_id=organization.id, connector=name,
                                            display_name=organization.display_name, first_seen_at=now,
                                            last_seen_at=now))
                changes.new.append(name)
                continue
            if row.display_name != organization.display_name:
                row.display_name = organization.display_name
                changes.renamed.append(row.connector)
            if row.removed_at is not None:
                changes.returned.append(row.connector)
            row.last_seen_at, row.missing_since, row.removed_at = now, None, None
            session.add(row)
        for org_id, row in rows.items():
            if org_id in listed or row.removed_at is not None:
                continue
            row.missing_since = row.missing_since or now
            if now - row.missing_since >= remove_after:
                row.removed_at = now
                changes.removed.append(row.connector)
            else:
                changes.missing.append(row.connector)
            session.add(row)
        session.commit()


def _record_listing(engine: Engine, msp: str, outcome: ListingOutcome, *, error: str | None = None,
                    organizations: int = 0, requests: int = 0, now: datetime) -> None:
    row = {"msp": msp, "listed_at": now, "outcome": outcome, "error": error, "organizations": organizations,
           "requests": requests}
    with Session(engine) as session:
        bulk_upsert(session, _LISTINGS, [row], ["msp"], [column for column in row if column != "msp"])
        session.commit()
