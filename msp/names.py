"""The connector name of a newly listed organisation: chosen once, never reused (docs/msp.md)."""

from __future__ import annotations

import re
import unicodedata

from config.values import NAME_MAX
from connector.organizations import Organization

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
