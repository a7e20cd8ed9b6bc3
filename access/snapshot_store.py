"""Stored renderings of a connector's access report and export, and whether they are still current.

A rendering is stored with the connector's data version (``models.dataversion``) read *before* its data, and
made only while no sync run is active. It is current while the connector's version is still that one and no
run is active: any write after the version was read started a newer run or moved the counter. No transaction
has to span the rendering (the report's checks run in threads, each on its own connection): a rendering whose
version still matches was read while nothing changed.

A rendering's blocks are written as they are made, under its own ``render_id`` (``StagedRendering``); the header
names it once it is whole. Two renderings racing each other are harmless: the header names one of them, and
blocks are read in one statement and checked against the header's count.

The bytes are compressed with zstd (level 3) in blocks of about 2 million characters: 92MB of CSV for 465k
grants take 16MB, and decompress in a tenth of a second.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

from sqlalchemy import Connection, Engine, Table, delete, select

from models.bulk import dialect_insert
from models.dataversion import CurrentVersion, DataVersion, data_version
from models.tables import AccessSnapshot, AccessSnapshotBlock, table_of, utcnow

# SQLModel's stubs do not declare __table__.
_HEADERS: Table = table_of(AccessSnapshot)
_BLOCKS: Table = table_of(AccessSnapshotBlock)


@dataclass(frozen=True)
class Stored:
    """A stored rendering's header."""

    render_id: str
    renderer: str
    version: DataVersion
    rendered_at: datetime
    render_seconds: float
    export_rows: int
    artifacts: dict[str, int]


def stored(connection: Connection, connector_id: int) -> Stored | None:
    row = connection.execute(select(_HEADERS).where(_HEADERS.c.connector_id == connector_id)).first()
    return None if row is None else _header(row)


def stored_by_connector(connection: Connection) -> dict[int, Stored]:
    """Every connector's stored rendering header, by connector id, in one query."""
    return {row.connector_id: _header(row) for row in connection.execute(select(_HEADERS))}


def _header(row) -> Stored:
    return Stored(render_id=row.render_id, renderer=row.renderer, version=DataVersion(row.run_id, row.data_version),
                  rendered_at=row.rendered_at, render_seconds=row.render_seconds, export_rows=row.export_rows,
                  artifacts=dict(row.artifacts))


def is_current(header: Stored | None, now: CurrentVersion, renderer: str) -> bool:
    """Whether ``header``'s rendering may be served: ``renderer`` made it, at the version read ``now``, and no
    sync run is active."""
    return (header is not None and header.renderer == renderer and not now.run_active
            and now.same_as(header.version))


def current(connection: Connection, connector_id: int, renderer: str) -> Stored | None:
    """The stored rendering if ``renderer`` made it and the data has not changed since, else None."""
    header = stored(connection, connector_id)
    return header if is_current(header, data_version(connection, connector_id), renderer) else None


#: Blocks a staged rendering writes to the database in one statement.
STAGE_BLOCKS = 8


class StagedRendering:
    """A rendering's blocks written to the database as they are made, under a ``render_id`` that no header names
    yet (readers never see them), so that the worker never holds the whole compressed rendering. ``commit`` makes
    it the connector's rendering and removes the previous one's blocks, in one transaction; ``discard`` removes
    the blocks of a rendering that failed (a later ``commit`` removes any left behind)."""

    def __init__(self, engine: Engine, connector_id: int) -> None:
        self.engine, self.connector_id = engine, connector_id
        self.render_id = uuid4().hex
        self.counts: dict[str, int] = {}
        self.compressed_bytes = 0
        self._pending: list[dict] = []

    def declare(self, artifact: str) -> None:
        """An artifact of the rendering, even if it ends up with no block."""
        self.counts.setdefault(artifact, 0)

    def add(self, artifact: str, body: bytes) -> None:
        """The artifact's next block."""
        seq = self.counts.get(artifact, 0)
        self.counts[artifact] = seq + 1
        self.compressed_bytes += len(body)
        self._pending.append({"connector_id": self.connector_id, "render_id": self.render_id, "artifact": artifact,
                              "seq": seq, "body": body})
        if len(self._pending) >= STAGE_BLOCKS:
            self._write()

    def _write(self) -> None:
        if self._pending:
            with self.engine.begin() as connection:
                connection.execute(_BLOCKS.insert(), self._pending)
            self._pending = []

    def commit(self, version: DataVersion, *, renderer: str, export_rows: int, seconds: float) -> str:
        """The staged blocks become the connector's rendering made at ``version``; returns its ``render_id``."""
        self._write()
        header = {"connector_id": self.connector_id, "render_id": self.render_id, "renderer": renderer,
                  "run_id": version.run_id, "data_version": version.counter, "rendered_at": utcnow(),
                  "render_seconds": round(seconds, 3), "export_rows": export_rows, "artifacts": dict(self.counts)}
        with self.engine.begin() as connection:
            connection.execute(delete(_BLOCKS).where(_BLOCKS.c.connector_id == self.connector_id,
                                                     _BLOCKS.c.render_id != self.render_id))
            insert = dialect_insert(connection.dialect.name, _HEADERS)
            connection.execute(insert.values(header).on_conflict_do_update(
                index_elements=[_HEADERS.c.connector_id],
                set_={k: v for k, v in header.items() if k != "connector_id"}))
        return self.render_id

    def discard(self) -> None:
        self._pending = []
        with self.engine.begin() as connection:
            connection.execute(delete(_BLOCKS).where(_BLOCKS.c.connector_id == self.connector_id,
                                                     _BLOCKS.c.render_id == self.render_id))


def blocks(connection: Connection, connector_id: int, header: Stored, artifact: str) -> list[bytes] | None:
    """The compressed blocks of one artifact of ``header``'s rendering, in order; None when that rendering was
    replaced meanwhile (its blocks are gone) or has no such artifact."""
    expected = header.artifacts.get(artifact)
    if expected is None:
        return None
    rows = connection.execute(
        select(_BLOCKS.c.body).where(_BLOCKS.c.connector_id == connector_id, _BLOCKS.c.render_id == header.render_id,
                                     _BLOCKS.c.artifact == artifact).order_by(_BLOCKS.c.seq)).scalars().all()
    return list(rows) if len(rows) == expected else None


def compress(text: str) -> bytes:
    """A block: the text's UTF-8 bytes, zstd-compressed."""
    import zstandard  # only the processes that render or serve need it

    compressed = zstandard.ZstdCompressor(level=3).compress(text.encode("utf-8"))
    # A copy of the right size: the compressor's result keeps the allocation of the input's worst case (about
    # 3MB held for each 0.3MB block: 300MB more at the peak of an xl rendering).
    return bytes(memoryview(compressed))


def decompress_blocks(compressed: Iterable[bytes]) -> Iterator[bytes]:
    """Each block's bytes, in order."""
    import zstandard

    decompressor = zstandard.ZstdDecompressor()
    for block in compressed:
        yield decompressor.decompress(block)
