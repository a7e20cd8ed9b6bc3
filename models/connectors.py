"""Registering a configured connector: the ``connectors`` row its runs, rows and requests point to.

Beside the tables, so that every package that writes for a connector (``pipeline``, ``provisioning``) finds
its id without importing another.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from config.connector import ConnectorConfig
from models.tables import Connector


def register_connector(session: Session, connector: ConnectorConfig) -> int:
    """The connector's row id, creating or refreshing the row (never with the key)."""
    row = session.execute(select(Connector).where(col(Connector.name) == connector.name)).scalars().first()
    if row is None:
        row = Connector(name=connector.name, base_url=connector.base_url, org_id=connector.org_id)
        session.add(row)
        try:
            session.commit()
        except IntegrityError:  # registered by another process just now
            session.rollback()
            row = session.execute(select(Connector).where(col(Connector.name) == connector.name)).scalars().one()
    elif (row.base_url, row.org_id) != (connector.base_url, connector.org_id):
        row.base_url, row.org_id = connector.base_url, connector.org_id
        session.add(row)
        session.commit()
    assert row.id is not None  # committed above or read back
    return row.id


_registered: WeakKeyDictionary[Engine, dict[tuple[str, str, str | None], int]] = WeakKeyDictionary()


def registered_connector_id(engine: Engine, connector: ConnectorConfig) -> int:
    """The connector's row id, registering it (``register_connector``) the first time this process sees the
    connector with this URL and org on this database: rows are never deleted, and a changed URL or org is
    another key, so it is registered again. For provisioning, where a request must not pay for it each time."""
    known = _registered.setdefault(engine, {})
    key = (connector.name, connector.base_url, connector.org_id)
    if key not in known:
        with Session(engine) as session:
            known[key] = register_connector(session, connector)
    return known[key]
