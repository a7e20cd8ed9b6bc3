"""Prometheus metrics under ``jumpsync up`` (with ``JUMPSYNC_METRICS_PORT``): one /metrics for the whole run.

Both workers record events (the sync worker its syncs, the provisioning worker its requests), each in its pool
processes, in prometheus-client's multiprocess files. ``up`` gives both workers one directory of its own,
``var/metrics`` (emptied at the start, removed at the stop: counts from an earlier run would otherwise be added
in, and nothing is left in /tmp), and only the sync worker the port: its exporter sums every file in the
directory, the provisioning worker's included. Two exporters would want the same port, and the second would
serve nothing. The exporter listens on loopback unless ``JUMPSYNC_METRICS_ADDRESS`` says otherwise: ``up`` is
one person's machine.
"""

from __future__ import annotations

import os
import shutil

from cli.up.listeners import LOOPBACK
from cli.up.state import VAR

METRICS_DIR = VAR / "metrics"
PORT_ENV = "JUMPSYNC_METRICS_PORT"
ADDRESS_ENV = "JUMPSYNC_METRICS_ADDRESS"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def worker_environments(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The sync worker's environment and the provisioning worker's (``env`` itself without metrics)."""
    if not env.get(PORT_ENV):
        return env, env
    remove_metrics_dir()
    METRICS_DIR.mkdir(mode=0o700, parents=True)
    shared = {**env, MULTIPROC_ENV: str(METRICS_DIR.resolve()), ADDRESS_ENV: address_of_metrics()}
    return shared, {name: value for name, value in shared.items() if name != PORT_ENV}


def address_of_metrics() -> str:
    """Where the exporter listens under ``up``."""
    return os.environ.get(ADDRESS_ENV) or LOOPBACK


def remove_metrics_dir() -> None:
    shutil.rmtree(METRICS_DIR, ignore_errors=True)
