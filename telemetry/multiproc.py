"""Where the pool processes' metrics live. Imports nothing from prometheus-client on purpose: the directory
must be known before prometheus-client is first imported, and Celery's command line imports it early (through
Flower's plugin), so the launcher (``jumpsync worker``) calls this before starting Celery."""

from __future__ import annotations

import os
import sys
import tempfile


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
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    os.makedirs(directory, exist_ok=True)
    return directory
