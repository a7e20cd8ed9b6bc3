"""Access insight as CSV and JSON (docs/access.md): the formula-safe CSV cell, the JSON printer, and the
export's lines, assembled from parts rendered once per principal, resource and group (access.export).

Every CSV field goes through ``csv_cell``; JSON is never altered. The export's bytes are exactly those of
``csv.writer`` and ``json`` writing each row in full (a test compares them), only faster.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterable, Iterator
from enum import Enum
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy import Engine


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"


class TextOut(Protocol):
    """Where a rendering goes: a text file, standard output, or a stored rendering's blocks."""

    def write(self, text: str, /) -> int: ...


def print_json(data: dict[str, Any]) -> None:
    """``write_json`` to standard output."""
    write_json(sys.stdout, data)


def write_json(out: TextOut, data: dict[str, Any]) -> None:
    """The object with one key per line and each list element on a line of its own: as readable as indent=2
    and diffable line by line, but written by the C encoder (``indent`` makes the encoder fall back to pure Python)."""
    encode = json.JSONEncoder(ensure_ascii=False).encode
    lines = ["{"]
    for index, (key, value) in enumerate(data.items()):
        comma = "," if index < len(data) - 1 else ""
        if isinstance(value, list) and value:
            lines.append(f"  {encode(key)}: [")
            lines.append(",\n".join("    " + encode(item) for item in value))
            lines.append(f"  ]{comma}")
        else:
            lines.append(f"  {encode(key)}: {encode(value)}{comma}")
    lines.append("}")
    out.write("\n".join(lines) + "\n")


def write_json_array(out: TextOut, items: list[Any]) -> None:
    """A JSON array with each element on a line of its own, as ``write_json`` writes a list member."""
    if not items:
        out.write("[]\n")
        return
    encode = json.JSONEncoder(ensure_ascii=False).encode
    out.write("[\n" + ",\n".join("  " + encode(item) for item in items) + "\n]\n")


#: Findings of each kind that the report's table shows; CSV and JSON list them all.
REPORT_ROWS_PER_KIND = 50


def report_head(data: dict[str, Any], per_kind: int = REPORT_ROWS_PER_KIND) -> dict[str, Any]:
    """The report with the first ``per_kind`` findings of each kind only (what its table shows)."""
    shown: dict[str, int] = {}
    findings = []
    for finding in data["findings"]:
        if shown.setdefault(finding["kind"], 0) < per_kind:
            shown[finding["kind"]] += 1
            findings.append(finding)
    return {**data, "findings": findings}


def write_report(out: TextOut, data: dict[str, Any], fmt: ReportFormat) -> None:
    """The report as JSON (``write_json``) or CSV (a header of ``REPORT_COLUMNS``, one finding a row)."""
    from access.report import REPORT_COLUMNS, finding_row

    if fmt is ReportFormat.json:
        write_json(out, data)
        return
    if fmt is not ReportFormat.csv:
        raise ValueError(f"the report has no {fmt.value} file format")
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    writer.writerows(csv_rows(finding_row(f) for f in data["findings"]))


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(_FORMULA_STARTS)


def csv_cell(value: Any) -> Any:
    """A CSV field that a spreadsheet shows as text: names come from JumpCloud, and a review file is opened in
    Excel, where ``=HYPERLINK(...)`` would be a live formula. Such text gets a leading ``'`` (OWASP's advice);
    JSON output is never altered. Booleans are ``true``/``false``, None is empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def csv_rows(rows: Iterable[tuple]) -> Iterator[list]:
    """Rows with ``csv_cell`` applied to each field."""
    # csv_cell only where it changes something: 2M calls would double the time of a 176k-grant export.
    for row in rows:
        yield [csv_cell(v) if (v.__class__ is bool or (v.__class__ is str and v[:1] in _FORMULA_FIRST)) else v
               for v in row]


# --- the export ------------------------------------------------------------------------------------------------

#: A formula character at the start of a field after the first, in fields joined by commas.
_FORMULA_AFTER_COMMA = re.compile(",[=+\\-@\t]")


def _plain_csv(text: str, fields: int) -> bool:
    """Whether ``fields`` joined by commas into ``text`` are written by ``csv.writer`` just so: no comma, quote
    or line end in a field (those are quoted) and no formula character starting one (``csv_cell``)."""
    return (text.count(",") == fields - 1 and '"' not in text and "\r" not in text and "\n" not in text
            and text[:1] not in _FORMULA_FIRST and not _FORMULA_AFTER_COMMA.search(text))


def _csv_part(_: int, values: tuple) -> str:
    """Consecutive fields of a CSV line exactly as ``csv.writer`` writes them, through ``csv_cell``.

    Plain text (most names and ids) is joined as it is (0.7µs); anything else goes through the writer itself
    (2.3µs), for each of the 100k principals at xl.
    """
    try:
        text = ",".join(["" if v is None else v for v in values])
    except TypeError:  # a boolean
        pass
    else:
        if _plain_csv(text, len(values)):
            return text
    _CSV_BUFFER.seek(0)
    _CSV_BUFFER.truncate()
    # One more (empty) field, since a lone empty field is written quoted; and the writer's own line end, since
    # it quotes a field that holds one of its characters. Both are cut off again: ",\r\n".
    _CSV_WRITER.writerow([*map(csv_cell, values), ""])
    return _CSV_BUFFER.getvalue()[:-3]


#: A CSV line from the export's seven parts (a str method: no Python frame per line).
_csv_line = "{},{},{},{},{},{},{}\r\n".format


_CSV_BUFFER = io.StringIO()
_CSV_WRITER = csv.writer(_CSV_BUFFER)  # the default dialect, as the report's CSV
_JSON = json.JSONEncoder(ensure_ascii=False).encode


def _json_part(first: int, values: tuple) -> str:
    """Consecutive members of a JSON object exactly as ``json`` writes the whole object."""
    from access.export import EXPORT_COLUMNS

    return ", ".join(f"{_JSON(EXPORT_COLUMNS[first + i])}: {_JSON(value)}" for i, value in enumerate(values))


#: A JSON object from the export's seven parts.
_json_line = "{{{}, {}, {}, {}, {}, {}, {}}}".format


def export_lines(engine: Engine, connector: str, fmt: ExportFormat) -> Iterator[str]:
    """The export's CSV lines (each with its line end) or JSON objects, in order. UnknownConnector at once."""
    from access.export import export_rows

    if fmt is ExportFormat.csv:
        return export_rows(engine, connector, _csv_part, _csv_line)
    return export_rows(engine, connector, _json_part, _json_line)


def _both_part(first: int, values: tuple) -> tuple[str, str]:
    return _csv_part(first, values), _json_part(first, values)


def _both_line(*parts: tuple[str, str]) -> tuple[str, str]:
    return _csv_line(*(p[0] for p in parts)), _json_line(*(p[1] for p in parts))


def export_line_pairs(engine: Engine, connector: str) -> Iterator[tuple[str, str]]:
    """``export_lines`` of both formats from one read of the grants: (CSV line, JSON object) per grant."""
    from access.export import export_rows

    return export_rows(engine, connector, _both_part, _both_line)


class ExportWriter:
    """Writes the export in one format: the CSV header and lines, or a JSON array with one object per line
    (valid JSON, streamed, and diffable between two reviews). Lines come in batches (``write``)."""

    def __init__(self, out: TextOut, fmt: ExportFormat) -> None:
        from access.export import EXPORT_COLUMNS

        self.out, self.fmt, self.count = out, fmt, 0
        out.write(_csv_part(0, EXPORT_COLUMNS) + "\r\n" if fmt is ExportFormat.csv else "[")

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        if self.fmt is ExportFormat.csv:
            self.out.write("".join(lines))
        else:
            self.out.write(("\n" if self.count == 0 else ",\n") + ",\n".join(lines))
        self.count += len(lines)

    def close(self) -> int:
        """Ends the output; returns how many grants were written."""
        if self.fmt is ExportFormat.json:
            self.out.write("\n]\n" if self.count else "]\n")
        return self.count


def write_export(out: TextOut, lines: Iterator[str], fmt: ExportFormat, batch: int = 10_000) -> int:
    """Write the export of ``lines`` in ``fmt`` (``ExportWriter``); returns how many grants. Lines are joined
    ``batch`` at a time."""
    writer = ExportWriter(out, fmt)
    while chunk := list(islice(lines, batch)):
        writer.write(chunk)
    return writer.close()
