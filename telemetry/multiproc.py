"""Where the pool processes' metrics live. Imports nothing from prometheus-client on purpose: the directory
must be known before prometheus-client is first imported, and Celery's command line imports it early (through
Flower's plugin), so the launcher (``jumpsync worker``) calls this before starting Celery."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

#: The directory ``ensure_multiproc_dir`` made (as opposed to one given): the worker removes it when it stops.
CREATED_ENV = "JUMPSYNC_METRICS_DIR_CREATED"


def ensure_multiproc_dir() -> str | None:
    """With ``JUMPSYNC_METRICS_PORT`` set, make sure ``PROMETHEUS_MULTIPROC_DIR`` names a directory."""
    if not os.environ.get("JUMPSYNC_METRICS_PORT"):
        return None
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        if "prometheus_client" in sys.modules:
            raise RuntimeError("JUMPSYNC_METRICS_PORT is set but prometheus_client was imported before "
                               "PROMETHEUS_MULTIPROC_DIR: start workers with `jumpsync worker`, or set "
                               "PROMETHEUS_MULTIPROC_DIR to an empty directory")
        directory = tempfile.mkdtemp(prefix="jumpsync-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[CREATED_ENV] = directory
    os.makedirs(directory, exist_ok=True)
    return directory


def remove_created_dir() -> None:
    """At the worker's stop: the directory ``ensure_multiproc_dir`` made for it, so that no run leaves one
    behind. A directory that was given (a deployment's tmpfs, ``up``'s var/metrics) belongs to whoever gave it."""
    created = os.environ.get(CREATED_ENV)
    if created and created == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(created, ignore_errors=True)
