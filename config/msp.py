"""An ``[[msp]]`` table: one multi-tenant (MSP) administrator key whose organisations are discovered from
``GET /api/organizations`` and synced as connectors of their own (``msp.discovery``, docs/msp.md).

The table says where the API is and the key (``KeyOptions``: the rate and in-flight limits are shared by every
organisation the key reaches), which organisations to take (``include`` / ``exclude``: shell-style patterns
matched against an organisation's id or its name, case-insensitively), how often to look, and, in ``connector``,
the sync options every discovered organisation gets (``SyncOptions``, as in ``[[connectors]]``).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from pydantic import Field, field_validator

from config.connector import ConnectorConfig, KeyOptions, SyncOptions
from config.values import Duration, check_name, read_api_key

#: A discovered connector's name is the table's name, a dash and the organisation's: room for both.
MSP_NAME_MAX = 24


class MspConfig(KeyOptions):
    """One MSP key and the organisations to sync through it."""

    name: str
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    discover_interval: Duration = "10m"
    #: An organisation missing from the listing this long is removed (its schedule stops; its data is kept):
    #: one missing from a single listing (an API hiccup, a permission being changed) keeps running.
    remove_after: Duration = "30m"
    connector: SyncOptions = Field(default_factory=SyncOptions)
    #: One budget for the key across all its organisations, on by default: many organisations' syncs and
    #: refreshes, all due at once when they are discovered, must not each open their own requests.
    shared_max_in_flight: int | None = Field(default=16, ge=1, le=256)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        check_name(value, "name")
        if len(value) > MSP_NAME_MAX:
            raise ValueError(f"{value!r} is longer than {MSP_NAME_MAX} characters (it prefixes connector names)")
        return value

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not pattern.strip() for pattern in value):
            raise ValueError("a pattern is empty")
        return value

    def takes(self, org_id: str, display_name: str) -> bool:
        """Whether an organisation is synced: it matches an ``include`` pattern and no ``exclude`` pattern."""
        names = (org_id.lower(), display_name.lower())

        def matches(patterns: tuple[str, ...]) -> bool:
            return any(fnmatchcase(name, pattern.lower()) for pattern in patterns for name in names)

        return matches(self.include) and not matches(self.exclude)

    def api_key(self) -> str:
        return read_api_key(f"msp {self.name!r}", self.api_key_env, self.api_key_file)

    def connector_for(self, name: str, org_id: str | None) -> ConnectorConfig:
        """The connector of one discovered organisation: this table's key and limits, its ``connector``
        options, the organisation's id in ``x-org-id`` (None: the listing, which names no organisation)."""
        return ConnectorConfig(name=name, org_id=org_id, msp=self.name,
                               **self.model_dump(include=set(KeyOptions.model_fields)),
                               **self.connector.model_dump())
