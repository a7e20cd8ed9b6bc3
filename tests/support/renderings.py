"""The access report and export two ways: computed from the tables now, and as the worker stored them."""

from __future__ import annotations

import io

from access import snapshots as stored
from access.render import ExportFormat, ReportFormat, export_lines, write_export, write_report
from access.report import report


def live(engine, artifact: str, connector: str = "acme") -> bytes:
    """What the command writes when it computes the answer from the tables."""
    kind, fmt = artifact.split(".")
    out = io.StringIO(newline="")
    if kind == "report":
        write_report(out, report(engine, connector), ReportFormat(fmt))
    else:
        write_export(out, export_lines(engine, connector, ExportFormat(fmt)), ExportFormat(fmt))
    return out.getvalue().encode()


def served(engine, artifact: str, connector: str = "acme") -> bytes | None:
    found = stored.stored_artifact(engine, connector, artifact)
    return found.read() if found else None
