"""The value types of the config file, shared by its tables: durations, cron expressions, URLs, names, org ids,
and the reading of an API key from its env var or file. Each check raises ``ValueError`` with the problem in
words; the loader (``config.settings``) adds the file and the key."""

from __future__ import annotations

import os
import re
import stat
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

DEFAULT_BASE_URL = "https://console.jumpcloud.com"

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
NAME_MAX = 63


class ConfigError(Exception):
    """A configuration problem, with the file and key it concerns in the message."""


def parse_duration(text: str) -> timedelta:
    """Parse ``30s``, ``15m``, ``2h``, ``1d`` or combinations such as ``1h30m``."""
    match = _DURATION.match(text.strip()) if text else None
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 2h or 1h30m")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    value = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if value < timedelta(seconds=10):
        raise ValueError(f"{text!r} is shorter than the 10s minimum")
    return value


def _checked_duration(value: str) -> str:
    parse_duration(value)
    return value


#: A duration in the config file (``30s``, ``15m``, ``1h30m``), checked when the file is read.
Duration = Annotated[str, AfterValidator(_checked_duration)]


def parse_cron(text: str):
    """Parse a five-field cron expression (minute hour day-of-month month day-of-week) into a Celery crontab."""
    from celery.schedules import crontab  # imported here: every CLI command loads this module, few need Celery

    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"{text!r} is not a cron expression of five fields (minute hour day month weekday)")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month_of_year, day_of_week=day_of_week)
    except Exception as exc:  # noqa: BLE001  celery raises ValueError or its own ParseException
        raise ValueError(f"{text!r} is not a valid cron expression: {exc}") from None


def is_loopback_url(url: str) -> bool:
    from jumpcloud.urls import is_loopback_host  # httpx is heavy to import; only plain-http URLs need this

    return is_loopback_host(urlsplit(url).hostname or "")


@lru_cache(maxsize=64)
def check_base_url(value: str | None) -> str | None:
    """An https URL, or plain http to a loopback simulator; without its trailing slash. Cached: an MSP key's
    organisations all share their table's URL, checked again for each whenever a process reads them."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback_url(value):
        raise ValueError(f"{value!r}: plain http is only allowed for a loopback simulator; use https")
    return value.rstrip("/")


def check_name(value: str, what: str = "connector name") -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a {what} (lowercase letters, digits, - and _; up to {NAME_MAX})")
    return value


def check_org_id(value: str | None) -> str | None:
    if value is None:
        return None
    from jumpcloud.ids import is_object_id  # imported here: the commands that only read the database load no client

    if not is_object_id(value):
        raise ValueError(f"{value!r} is not a JumpCloud organisation id (24 hex characters)")
    return value


def read_api_key(owner: str, env: str | None, file: Path | None) -> str:
    """Read an API key from its env var or file (exactly one is set). Errors name ``owner`` and the source,
    never the key; a key file readable by group or others is refused."""
    if env is not None:
        key = os.environ.get(env, "").strip()
        if not key:
            raise ConfigError(f"{owner}: environment variable {env} is not set")
        return key
    assert file is not None
    try:
        mode = file.stat().st_mode
        key = file.read_bytes().decode("utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{owner}: api_key_file {file}: {exc.strerror}") from None
    except UnicodeDecodeError:  # the key's bytes are not named: they are the secret
        raise ConfigError(f"{owner}: api_key_file {file} is not UTF-8 text") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{owner}: api_key_file {file} is readable by others; chmod 600 it")
    if not key:
        raise ConfigError(f"{owner}: api_key_file {file} is empty")
    return key
