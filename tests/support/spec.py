"""JumpCloud's official Swagger 2.0 specs as JSON Schema: what the conformance tests check responses against.

The schemas come from the operations in the specs themselves (`paths[...][method].responses[status].schema`),
converted to JSON Schema (draft 4, which Swagger 2.0 builds on): `$ref`s resolve into the spec's `definitions`,
every *property* also accepts `null` (real responses carry null in fields typed as string, array or object),
unknown properties stay allowed. The specs are vendored in simulator/openapi/ (unchanged copies).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema

import simulator

SPEC_DIR = Path(simulator.__file__).parent / "openapi"

# Keywords of Swagger 2.0 schema objects that JSON Schema does not know or that only describe.
_DROP = {"discriminator", "readOnly", "xml", "externalDocs", "example", "description", "title"}


# ---- Swagger 2.0 -> JSON Schema --------------------------------------------------------------------------


def convert(node: Any) -> Any:
    """A Swagger schema object as JSON Schema, with `null` allowed on every property."""
    if isinstance(node, list):
        return [convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-") or key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: nullable(convert(schema)) for name, schema in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = convert(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [convert(v) for v in value]
        else:
            out[key] = value
    if out.get("additionalProperties") is False:
        del out["additionalProperties"]
    return out


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema or "type" not in schema:
        return {"anyOf": [{"type": "null"}, schema]}
    schema = dict(schema)
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    schema["type"] = [*types, "null"] if "null" not in types else types
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    return schema


@cache
def spec(version: str) -> dict[str, Any]:
    return json.loads((SPEC_DIR / f"jumpcloud-{version}.json").read_text(encoding="utf-8"))


@cache
def definitions(version: str) -> dict[str, Any]:
    return {name: convert(schema) for name, schema in spec(version)["definitions"].items()}


def validator(version: str, schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    return _validator(version, json.dumps(schema, sort_keys=True))


@cache
def _validator(version: str, schema_json: str) -> jsonschema.Draft4Validator:
    root = {**convert(json.loads(schema_json)), "definitions": definitions(version)}
    jsonschema.Draft4Validator.check_schema(root)  # the converted schemas are valid draft-4
    return jsonschema.Draft4Validator(root)


def response_schema(version: str, path: str, method: str, status: int) -> dict[str, Any]:
    """The schema the spec declares for an operation's response (fails if the spec has none)."""
    responses = spec(version)["paths"][path][method]["responses"]
    schema = responses[str(status)]["schema"]
    assert schema, f"{method.upper()} {path} {status}: the spec declares no body"
    return schema


def error_schema(version: str, status: int) -> dict[str, Any]:
    return spec(version)["responses"][f"trait:standardErrors:{status}"]["schema"]


def check(version: str, schema: dict[str, Any], body: Any) -> None:
    errors = sorted(validator(version, schema).iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def check_op(version: str, path: str, method: str, resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    body = resp.json()
    check(version, response_schema(version, path, method, status), body)
    return body
