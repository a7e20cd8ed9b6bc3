"""The access report and export rendered ahead of time, so that the commands answer at once (docs/access.md).

On the xl tenant (100k users, 465k grants) the export took 3.5s and the report 1.1s computed from the tables;
most of it is the rows themselves, not the queries. The worker renders both, in every file format, after each
sync and on a schedule when provisioning changed the data (``refresh``, task ``jumpsync.access.refresh``);
``jumpsync report`` and ``jumpsync export`` write the stored bytes while they are current (``current``), and
compute the answer as before when they are not. The bytes are the same either way (tests compare them).

Whether a rendering is current is ``models.snapshots``' business; this module only knows the artifacts.
"""

from __future__ import annotations

import json
import time
from itertools import islice
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy import Engine

from models import snapshots
from models.queries import UnknownConnector, connector_id
from worker.access_output import (ExportFormat, ExportWriter, ReportFormat, export_line_pairs, report_head,
                                  write_report)

#: Characters of text per stored block, before compression (about 10,000 export lines): each block is
#: compressed as soon as it is full, so a rendering holds its text one block at a time.
BLOCK_CHARS = 1 << 21
EXPORT_BATCH = 10_000


#: The report's table data: ``report_head`` as JSON (the table reads 250 findings, not 25,000).
REPORT_HEAD = "report.head.json"


def report_artifact(fmt: ReportFormat) -> str:
    return f"report.{fmt.value}"


def export_artifact(fmt: ExportFormat) -> str:
    return f"export.{fmt.value}"


class _BlockWriter:
    """A text stream that keeps what is written to it as compressed blocks of about ``BLOCK_CHARS``."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []
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
            self.blocks.append(snapshots.compress("".join(self._pending)))
            self._pending, self._size = [], 0


def _render(write: Callable[[IO[str]], Any]) -> tuple[list[bytes], Any]:
    """What ``write`` writes, as compressed blocks, and what it returns."""
    out = _BlockWriter()
    returned = write(out)
    out.flush()
    return out.blocks, returned


@dataclass(frozen=True)
class Rendering:
    artifacts: dict[str, list[bytes]]  # artifact name -> compressed blocks
    export_rows: int


def render(engine: Engine, connector: str) -> Rendering:
    """Every artifact of the connector, computed from the tables (the commands' own writers)."""
    from models.access import report

    data = report(engine, connector)
    artifacts, rows = {}, 0
    for report_fmt in (ReportFormat.json, ReportFormat.csv):
        artifacts[report_artifact(report_fmt)], _ = _render(lambda out: write_report(out, data, report_fmt))
    artifacts[REPORT_HEAD], _ = _render(lambda out: out.write(json.dumps(report_head(data))))
    # Both formats of the export from one read of the grants: the read holds every grant (its peak memory),
    # and a second one would cost that time again.
    outputs = {fmt: _BlockWriter() for fmt in ExportFormat}
    writers = {fmt: ExportWriter(out, fmt) for fmt, out in outputs.items()}
    pairs = export_line_pairs(engine, connector)
    while batch := list(islice(pairs, EXPORT_BATCH)):
        writers[ExportFormat.csv].write([csv_line for csv_line, _ in batch])
        writers[ExportFormat.json].write([json_line for _, json_line in batch])
    for fmt, out in outputs.items():
        rows = writers[fmt].close()
        out.flush()
        artifacts[export_artifact(fmt)] = out.blocks
    return Rendering(artifacts, rows)


@dataclass(frozen=True)
class Refreshed:
    """What ``refresh`` did: ``rendered``, ``current`` (nothing to do), ``busy`` (a sync run is active) or
    ``never synced``."""

    connector: str
    outcome: str
    seconds: float = 0.0
    compressed_bytes: int = 0


def refresh(engine: Engine, connector: str, *, force: bool = False) -> Refreshed:
    """Render the connector's report and export and store them, unless the stored ones are current (or
    ``force``). Nothing is rendered while a sync run is active: its data is still moving, and the run's end
    asks again."""
    clock = time.perf_counter()
    with engine.connect() as connection:
        try:
            cid = connector_id(connection, connector)
        except UnknownConnector:
            return Refreshed(connector, "never synced")
        version = snapshots.data_version(connection, cid)  # read before the data (models.snapshots)
        if version.run_active:
            return Refreshed(connector, "busy")
        if not force and snapshots.current(connection, cid) is not None:
            return Refreshed(connector, "current")
    rendering = render(engine, connector)
    seconds = time.perf_counter() - clock
    snapshots.save(engine, cid, version, rendering.artifacts, export_rows=rendering.export_rows, seconds=seconds)
    return Refreshed(connector, "rendered", round(seconds, 3),
                     sum(len(block) for blocks in rendering.artifacts.values() for block in blocks))


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


def current(engine: Engine, connector: str, artifact: str) -> StoredArtifact | None:
    """The artifact of the connector's rendering if that rendering is current, else None. Raises
    UnknownConnector."""
    with engine.connect() as connection:
        cid = connector_id(connection, connector)
        header = snapshots.current(connection, cid)
        found = snapshots.blocks(connection, cid, header, artifact) if header else None
    return StoredArtifact(header, found) if header and found is not None else None


def stored_report_head(engine: Engine, connector: str) -> dict[str, Any] | None:
    """The report's summary and the first findings of each kind (``report_head``: what the table shows) from
    the current rendering, or None. Raises UnknownConnector."""
    stored = current(engine, connector, REPORT_HEAD)
    return json.loads(stored.read()) if stored else None
