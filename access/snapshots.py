"""The access report and export rendered ahead of time, so that the commands answer at once (docs/access.md).

On a large tenant, computing the export and the report from the tables takes seconds, most of it the rows
themselves, not the queries. The worker renders both, in every file format, after each
sync and on a schedule when provisioning changed the data (``refresh``, task ``jumpsync.access.refresh``);
``jumpsync report`` and ``jumpsync export`` write the stored bytes while they are current (``stored_artifact``), and
compute the answer as before when they are not. The bytes are the same either way (tests compare them).

Whether a rendering is current is ``access.snapshot_store``' business; this module only knows the artifacts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import lru_cache, partial
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from access import snapshot_store as snapshots
from access.render import (
    ExportFormat,
    ExportWriter,
    ReportFormat,
    TextOut,
    export_line_pairs,
    report_head,
    write_report,
)
from models.columns import iso
from models.dataversion import data_version, data_versions
from models.queries import UnknownConnector, connector_id
from models.tables import Connector, utcnow

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

#: Characters of text per stored block, before compression (about 10,000 export lines): each block is
#: compressed as soon as it is full, so a rendering holds its text one block at a time.
BLOCK_CHARS = 1 << 21
#: Export lines taken from the grants at a time, for both formats: each batch is joined into one string per
#: format, so a larger batch holds more text at once for little speed.
EXPORT_BATCH = 5_000


#: The report's table data: ``report_head`` as JSON (the table reads 250 findings, not 25,000).
REPORT_HEAD = "report.head.json"


#: The modules whose code decides the stored bytes: the formats, the export's rows, the report's findings (and the
#: references they are made of), and this module's artifacts.
RENDERING_MODULES = ("access.render", "access.export", "access.report", "access.queries", "access.snapshots")


@lru_cache(maxsize=1)
def renderer_version() -> str:
    """A digest of ``RENDERING_MODULES``' source. A rendering is served only to the code that made it: after an
    upgrade that changed a column, a finding or the layout, the commands compute live until the worker (on
    the new version too) renders again. Read from the files, without importing them (start-up time)."""
    digest = hashlib.sha256()
    for name in RENDERING_MODULES:
        spec = importlib.util.find_spec(name)
        digest.update(Path(spec.origin).read_bytes() if spec and spec.origin else name.encode())
    return digest.hexdigest()[:40]


def report_artifact(fmt: ReportFormat) -> str:
    return f"report.{fmt.value}"


def export_artifact(fmt: ExportFormat) -> str:
    return f"export.{fmt.value}"


class _BlockWriter:
    """A text stream that hands what is written to it to ``staged`` as compressed blocks of about
    ``BLOCK_CHARS``, under ``artifact``."""

    def __init__(self, staged: snapshots.StagedRendering, artifact: str) -> None:
        self.staged, self.artifact = staged, artifact
        staged.declare(artifact)
        self._pending: list[str] = []
        self._size = 0

    def write(self, text: str) -> int:
        self._pending.append(text)
        self._size += len(text)
        if self._size >= BLOCK_CHARS:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.staged.add(self.artifact, snapshots.compress("".join(self._pending)))
            self._pending, self._size = [], 0


def _render(staged: snapshots.StagedRendering, artifact: str, write: Callable[[TextOut], Any]) -> None:
    """What ``write`` writes, as the artifact's compressed blocks."""
    out = _BlockWriter(staged, artifact)
    write(out)
    out.flush()


def render(engine: Engine, connector: str, staged: snapshots.StagedRendering) -> int:
    """Every artifact of the connector, computed from the tables (the commands' own writers), into ``staged``;
    the export's grant count. The report's data is dropped before the export reads the grants: the two never
    take memory at once."""
    _report_artifacts(engine, connector, staged)
    return _export_artifacts(engine, connector, staged)


def _report_artifacts(engine: Engine, connector: str, staged: snapshots.StagedRendering) -> None:
    from access.report import report

    data = report(engine, connector)
    for fmt in (ReportFormat.json, ReportFormat.csv):
        _render(staged, report_artifact(fmt), partial(write_report, data=data, fmt=fmt))
    _render(staged, REPORT_HEAD, lambda out: out.write(json.dumps(report_head(data))))


def _export_artifacts(engine: Engine, connector: str, staged: snapshots.StagedRendering) -> int:
    """Both formats of the export, from one read of the grants (a second one would cost that time again); the
    number of grants."""
    outputs = {fmt: _BlockWriter(staged, export_artifact(fmt)) for fmt in ExportFormat}
    writers = {fmt: ExportWriter(out, fmt) for fmt, out in outputs.items()}
    pairs = export_line_pairs(engine, connector)
    while batch := list(islice(pairs, EXPORT_BATCH)):
        writers[ExportFormat.csv].write([csv_line for csv_line, _ in batch])
        writers[ExportFormat.json].write([json_line for _, json_line in batch])
    rows = {fmt: writer.close() for fmt, writer in writers.items()}
    for out in outputs.values():
        out.flush()
    return rows[ExportFormat.csv]


class SnapshotOutcome(StrEnum):
    """What ``refresh`` did for a connector (the ``jumpsync.access.refresh`` task's result says it)."""

    RENDERED = "rendered"
    #: Nothing to do: the stored rendering is current.
    CURRENT = "current"
    #: A sync run is active: its data is still moving, and the run's end asks again.
    BUSY = "busy"
    NEVER_SYNCED = "never synced"
    #: Another worker holds the connector's lock.
    RENDERING_ELSEWHERE = "rendering elsewhere"
    #: Changed outside a full sync, and rendered less than ``render_interval`` ago: a later refresh renders it.
    DEFERRED = "deferred"
    FAILED = "failed"


@dataclass(frozen=True)
class Refreshed:
    """What ``refresh`` did for one connector, and what it cost."""

    connector: str
    outcome: SnapshotOutcome
    seconds: float = 0.0
    compressed_bytes: int = 0
    error: str | None = None


def refresh(engine: Engine, connector: str, *, force: bool = False,
            render_interval: timedelta = timedelta(0)) -> Refreshed:
    """Render the connector's report and export and store them, unless the stored ones are current (or
    ``force``). Nothing is rendered while a sync run is active: its data is still moving, and the run's end
    asks again. A rendering of the same full sync younger than ``render_interval`` is kept when only writes
    outside a run moved the data (``DEFERRED``): an incremental refresh every minute would otherwise render the
    whole report every minute; the next refresh past the interval renders it."""
    clock = time.perf_counter()
    with Session(engine) as session:
        connection = session.connection()
        try:
            cid = connector_id(session, connector)
        except UnknownConnector:
            return Refreshed(connector, SnapshotOutcome.NEVER_SYNCED)
        version = data_version(connection, cid)  # before the data (models.dataversion)
        if version.run_active:
            return Refreshed(connector, SnapshotOutcome.BUSY)
        header = snapshots.stored(connection, cid)
        if not force and snapshots.is_current(header, version, renderer_version()):
            return Refreshed(connector, SnapshotOutcome.CURRENT)
        if (not force and header is not None and header.renderer == renderer_version()
                and header.version.run_id == version.run_id and header.rendered_at > utcnow() - render_interval):
            return Refreshed(connector, SnapshotOutcome.DEFERRED)
    staged = snapshots.StagedRendering(engine, cid)
    try:
        export_rows = render(engine, connector, staged)
        seconds = time.perf_counter() - clock
        staged.commit(version, renderer=renderer_version(), export_rows=export_rows, seconds=seconds)
    except BaseException:
        _discard(staged)
        raise
    return Refreshed(connector, SnapshotOutcome.RENDERED, round(seconds, 3), staged.compressed_bytes)


def _discard(staged: snapshots.StagedRendering) -> None:
    """The blocks of a failed rendering, removed; if the database is what failed, the next commit removes them."""
    try:
        staged.discard()
    except Exception:  # the rendering's own error is the one to raise
        log.warning("the blocks of a failed rendering were not removed; the next rendering removes them",
                    exc_info=True)


#: How long a worker may hold a connector's rendering lock (the lock expires if the worker dies).
RENDER_LOCK_SECONDS = 3600


def refresh_connectors(engine: Engine, connectors: list[str], redis_client: Redis, *,
                       render_interval: timedelta = timedelta(0)) -> list[Refreshed]:
    """``refresh`` each connector in turn, each under a lock in Redis so that two workers (the refresh sent at
    a run's end and beat's) never render the same connector at once; one connector's failure does not stop
    the others (it is logged, and its commands compute live until a refresh succeeds)."""
    from redis.exceptions import LockError

    out = []
    for name in connectors:
        lock = redis_client.lock(f"jumpsync:access-refresh:{name}", timeout=RENDER_LOCK_SECONDS, blocking=False)
        if not lock.acquire():
            out.append(Refreshed(name, SnapshotOutcome.RENDERING_ELSEWHERE))
            continue
        try:
            out.append(refresh(engine, name, render_interval=render_interval))
        except Exception as exc:  # logged with its traceback; the next refresh tries again
            log.exception("rendering the report and export of %s failed", name)
            out.append(Refreshed(name, SnapshotOutcome.FAILED, error=f"{type(exc).__name__}: {exc}"[:500]))
        finally:
            try:
                lock.release()
            except LockError:  # expired meanwhile: nothing to release
                pass
    return out


@dataclass(frozen=True)
class StoredArtifact:
    """An artifact of a current rendering, read from the database."""

    header: snapshots.Stored
    blocks: list[bytes]

    def write_to(self, out: IO[bytes]) -> None:
        for data in snapshots.decompress_blocks(self.blocks):
            out.write(data)

    def read(self) -> bytes:
        return b"".join(snapshots.decompress_blocks(self.blocks))


def stored_artifact(engine: Engine, connector: str, artifact: str) -> StoredArtifact | None:
    """The artifact of the connector's rendering if that rendering is current, else None. Raises
    UnknownConnector."""
    with Session(engine) as session:
        connection = session.connection()
        cid = connector_id(session, connector)
        header = snapshots.current(connection, cid, renderer_version())
        found = snapshots.blocks(connection, cid, header, artifact) if header else None
    return StoredArtifact(header, found) if header and found is not None else None


def rendering_states(engine: Engine, connectors: list[str]) -> dict[str, dict[str, Any] | None]:
    """For ``jumpsync status``, each connector's stored rendering: when its report and export were last
    rendered, how long that took, and whether the commands serve it now (``current``); None if never rendered or
    never synced. The connectors, the headers and the data versions are read once for all: an MSP key's thousand
    organisations cost what ten do, but for the rows."""
    out: dict[str, dict[str, Any] | None] = {}
    with Session(engine) as session:
        connection = session.connection()
        ids = {name: cid for name, cid in session.execute(select(col(Connector.name), col(Connector.id)))}
        headers = snapshots.stored_by_connector(connection)
        versions = data_versions(connection) if headers else {}
        renderer = renderer_version()
        for name in connectors:
            cid = ids.get(name)
            header = headers.get(cid) if cid is not None else None
            if cid is None or header is None:
                out[name] = None
                continue
            version = versions.get(cid)  # None: the connector went between the two reads
            current = version is not None and snapshots.is_current(header, version, renderer)
            out[name] = {"rendered_at": iso(header.rendered_at), "render_seconds": header.render_seconds,
                         "export_rows": header.export_rows, "current": current}
    return out
