"""Prometheus metrics.

Two kinds:

* events (counters and histograms), recorded where they happen, in the worker's pool processes. With the
  prefork pool each process writes its own files under ``PROMETHEUS_MULTIPROC_DIR`` and the exporter sums them
  (prometheus-client's multiprocess mode); ``jumpsync worker`` (``telemetry.multiproc``) sets that directory up
  before any metric is created when ``JUMPSYNC_METRICS_PORT`` is set, and removes one it made when it stops.
* state (gauges) read from the database when Prometheus scrapes: live resources and grants, the age of the
  oldest pending provisioning request, the time of each connector's last successful sync. Every exporter
  reports the same values; aggregate them with ``max``.

Nothing here ever takes an API key: labels are connector names, routes (templates, not ids), statuses.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

SYNC_RUNS = Counter("jumpsync_sync_runs", "Sync runs by final status (skipped included).", ["connector", "status"])
SYNC_RUN_DURATION = Histogram("jumpsync_sync_run_duration_seconds", "Wall time of a sync run.",
                              ["connector", "status"], buckets=DURATION_BUCKETS)
SYNC_PART_DURATION = Histogram("jumpsync_sync_part_duration_seconds", "Wall time of one sync part.",
                               ["connector", "part", "status"], buckets=DURATION_BUCKETS)
API_REQUESTS = Counter("jumpsync_api_requests", "HTTP requests to JumpCloud, by route template and status.",
                       ["connector", "method", "route", "status"])
API_RETRIES = Counter("jumpsync_api_retries", "Requests to JumpCloud that were retried.", ["connector"])
PROVISIONING = Counter("jumpsync_provisioning_requests", "Provisioning requests by action and outcome.",
                       ["connector", "action", "outcome"])
EVENT_REFRESHES = Counter("jumpsync_events_refreshes", "Incremental refreshes from Directory Insights events, by "
                          "outcome (quiet, applied, skipped, waiting, full_sync, failed).", ["connector", "outcome"])
EVENT_REFRESH_REQUESTS = Counter("jumpsync_events_refresh_requests", "Requests made by incremental refreshes "
                                 "(events pages and objects read back).", ["connector", "kind"])
EVENT_LAG = Histogram("jumpsync_events_lag_seconds", "From an event's timestamp in JumpCloud to its change "
                      "written in the database by an incremental refresh.", ["connector"],
                      buckets=(1, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800))


def observe_part(connector: str, part: str, status: str, seconds: float) -> None:
    SYNC_PART_DURATION.labels(connector, part, status).observe(seconds)


def observe_run(connector: str, status: str, seconds: float | None) -> None:
    SYNC_RUNS.labels(connector, status).inc()
    if seconds is not None:
        SYNC_RUN_DURATION.labels(connector, status).observe(seconds)


def api_observer(connector: str) -> Callable[[str, str, int | str, float], None]:
    """The client's ``on_response`` hook for one connector."""

    def observe(method: str, route: str, status: int | str, _elapsed: float) -> None:
        API_REQUESTS.labels(connector, method, route, str(status)).inc()

    return observe


def count_retries(connector: str, retries: int) -> None:
    if retries:
        API_RETRIES.labels(connector).inc(retries)


def observe_refresh(connector: str, outcome: str, event_requests: int, read_requests: int,
                    lags: list[float]) -> None:
    EVENT_REFRESHES.labels(connector, outcome).inc()
    if event_requests:
        EVENT_REFRESH_REQUESTS.labels(connector, "events").inc(event_requests)
    if read_requests:
        EVENT_REFRESH_REQUESTS.labels(connector, "read_back").inc(read_requests)
    for lag in lags:
        EVENT_LAG.labels(connector).observe(lag)


def provisioning_outcome(connector: str, action: str, outcome: str) -> None:
    PROVISIONING.labels(connector, action, outcome).inc()


class DatabaseCollector:
    """Gauges computed from the database at scrape time."""

    def __init__(self, engine_factory: Callable) -> None:
        self.engine_factory = engine_factory

    def collect(self):
        from models.queries import metrics_snapshot

        resources = GaugeMetricFamily("jumpsync_resources", "Live resources.", labels=["connector", "type"])
        grants = GaugeMetricFamily("jumpsync_grants", "Live grants.", labels=["connector", "type"])
        last = GaugeMetricFamily("jumpsync_last_successful_sync_timestamp_seconds",
                                 "When the last successful sync of a connector ended.", labels=["connector"])
        pending = GaugeMetricFamily("jumpsync_provisioning_oldest_pending_seconds",
                                    "Age of the oldest pending provisioning request (0 when none).")
        awaiting = GaugeMetricFamily("jumpsync_provisioning_oldest_awaiting_approval_seconds",
                                     "Age of the oldest provisioning request awaiting approval (0 when none).")
        up = GaugeMetricFamily("jumpsync_database_up", "1 when the exporter could read the database.")
        organizations = GaugeMetricFamily("jumpsync_msp_organizations", "Organisations an MSP key listed, by state "
                                          "(listed, missing, removed).", labels=["msp", "state"])
        listing_ok = GaugeMetricFamily("jumpsync_msp_listing_ok", "1 when an MSP key's last organisations listing "
                                       "succeeded.", labels=["msp"])
        listed_at = GaugeMetricFamily("jumpsync_msp_last_listing_timestamp_seconds",
                                      "When an MSP key's organisations were last listed.", labels=["msp"])
        try:
            snapshot = metrics_snapshot(self.engine_factory())
        except Exception as exc:  # noqa: BLE001  (a scrape must not fail because the database is down)
            log.warning("metrics: cannot read the database: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        for (connector, rtype), value in snapshot.resources.items():
            resources.add_metric([connector, rtype], value)
        for (connector, rtype), value in snapshot.grants.items():
            grants.add_metric([connector, rtype], value)
        for connector, when in snapshot.last_success.items():
            last.add_metric([connector], when)
        pending.add_metric([], snapshot.oldest_pending_seconds)
        awaiting.add_metric([], snapshot.oldest_awaiting_approval_seconds)
        for (msp, state), value in snapshot.msp.organizations.items():
            organizations.add_metric([msp, state], value)
        for msp, (ok, when) in snapshot.msp.listings.items():
            listing_ok.add_metric([msp], 1 if ok else 0)
            listed_at.add_metric([msp], when)
        up.add_metric([], 1)
        yield from (resources, grants, last, pending, awaiting, organizations, listing_ok, listed_at, up)


def start_exporter(port: int, engine_factory: Callable, address: str = "0.0.0.0") -> None:
    """Serve /metrics: the pool processes' events (multiprocess) and the database gauges."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    registry.register(DatabaseCollector(engine_factory))
    start_http_server(port, addr=address, registry=registry)
    log.info("metrics on http://%s:%s/metrics", address, port)


def mark_process_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started
