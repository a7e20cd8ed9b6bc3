"""MSP discovery: list the organisations an ``[[msp]]`` key reaches and keep one connector per organisation.

``discover`` lists ``GET /api/organizations`` with the MSP key and records the listing in ``msp_organizations``
(``apply_listing``); ``discovered_connectors`` turns the rows into connector configs, which the worker's runtime
adds to the settings of every process (workers and beat pick them up without a restart).

The rules (docs/msp.md):

- An organisation's connector name is chosen when it is first listed, ``<msp>-<its name as a slug>``, and kept:
  a renamed organisation keeps its connector and its data. A name is never reused, not even one a connector of
  ``[[connectors]]`` or an earlier sync registered, so no organisation inherits another's rows.
- An organisation missing from a listing keeps running until it has been missing ``remove_after``; then its
  connector stops (its data stays). Listed again, it runs again, under the same name.
- A listing that fails changes nothing (the failure is recorded for ``jumpsync msp``).
- An organisation a ``[[connectors]]`` entry or an earlier ``[[msp]]`` table already syncs is not run twice
  (``config.settings.split_discovered``; ``shadowed`` in ``jumpsync msp list``).
- ``include``/``exclude`` are applied when the connectors are built, so a change to them takes effect with the
  config file, without a listing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from config.connector import ConnectorConfig
from config.msp import MspConfig
from config.settings import FileConfig, Settings, parse_duration, split_discovered
from config.values import NAME_MAX
from connector.organizations import Organization, list_organizations
from jumpcloud.client import JumpCloudClient
from models import queries
from models.bulk import bulk_upsert
from models.tables import Connector, MspListing, MspOrganization, utcnow
from pipeline.parts import describe_error, make_client

log = logging.getLogger(__name__)

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """``Acme Corp (EU)`` → ``acme-corp-eu``: lowercase ASCII letters and digits joined by dashes."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NOT_SLUG.sub("-", ascii_text.lower()).strip("-")


def connector_name(msp: str, organization: Organization, taken: set[str]) -> str:
    """A connector name for a newly listed organisation that no connector has or had: ``<msp>-<slug>``, cut to
    fit; on a clash the organisation id's last six characters are added, then the whole id, then a number."""
    base = f"{msp}-{slug(organization.display_name) or organization.id}"[:NAME_MAX].rstrip("-_")
    short = f"{base[:NAME_MAX - 7].rstrip('-_')}-{organization.id[-6:]}"
    whole = f"{msp}-{organization.id}"
    candidates = (base, short, whole, *(f"{whole}-{n}" for n in range(2, 10_000)))
    return next(candidate for candidate in candidates if candidate not in taken)


@dataclass
class DiscoveryResult:
    msp: str
    outcome: str  # ok | failed
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


ClientFactory = Callable[[ConnectorConfig], JumpCloudClient]


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
        _record_listing(engine, msp.name, "failed", error=error, requests=requests, now=now or utcnow())
        return DiscoveryResult(msp.name, "failed", requests=requests, error=error)


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
        result = DiscoveryResult(msp.name, "ok", listed=len(organizations), requests=requests)
        try:
            _apply(engine, msp, organizations, reserved, now, result)
            break
        except IntegrityError:
            if attempt == 2:
                raise
    _record_listing(engine, msp.name, "ok", organizations=len(organizations), requests=requests, now=now)
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
                                                        .where(MspOrganization.msp == msp.name)).scalars()}
        taken = (reserved | set(session.execute(select(MspOrganization.connector)).scalars())
                 | set(session.execute(select(Connector.name)).scalars()))
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


def _record_listing(engine: Engine, msp: str, outcome: str, *, error: str | None = None, organizations: int = 0,
                    requests: int = 0, now: datetime) -> None:
    row = {"msp": msp, "listed_at": now, "outcome": outcome, "error": error, "organizations": organizations,
           "requests": requests}
    with Session(engine) as session:
        bulk_upsert(session, MspListing.__table__, [row], ["msp"], [column for column in row if column != "msp"])
        session.commit()


def discovered_connectors(engine: Engine, file: FileConfig) -> list[ConnectorConfig]:
    """The connectors of the organisations the file's ``[[msp]]`` tables discovered: listed (not removed) and
    taken by the table's ``include``/``exclude``, in table order, then name order. A row no connector can be
    made of (it would fail validation) is left out with a warning: one bad row must not stop every process."""
    if not file.msp:
        return []
    with Session(engine) as session:
        rows = session.execute(select(MspOrganization).where(MspOrganization.msp.in_([m.name for m in file.msp]),
                                                             MspOrganization.removed_at.is_(None))
                               .order_by(MspOrganization.connector)).scalars().all()
    return _connectors(file, rows)


def _connectors(file: FileConfig, rows: list[MspOrganization]) -> list[ConnectorConfig]:
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
        rows = session.execute(select(MspOrganization).order_by(MspOrganization.connector)).scalars().all()
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


def wait_for_listing(engine: Engine, file: FileConfig, msp: str, since: datetime, timeout: float,
                     poll: float = 0.5) -> dict | None:
    """The ``organizations`` entry of ``msp`` once it was listed since ``since``; None after ``timeout``."""
    def listed() -> dict | None:
        table = next(t for t in organizations(engine, file) if t["name"] == msp)
        return table if listed_since(table, since) else None

    return queries.poll_until(listed, timeout, poll)
