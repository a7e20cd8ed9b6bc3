"""The API client of a connector, built from its config: the one place a key is read to make requests.

It sits beside the connector, below every package that makes requests (``pipeline``, ``provisioning``,
``msp``), so none of them imports another for it. Metrics are a higher layer (``telemetry`` reads the database
through ``models``), so this module does not import them: the process that exports metrics installs the
per-connector response observer once (``observe_responses``; ``worker.signals`` does it with
``telemetry.metrics.api_observer``), and every client built after that reports its responses to it. A process
that installs none (a CLI command, a test) builds clients that report nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from config.connector import ConnectorConfig
from jumpcloud.client import JumpCloudClient
from jumpcloud.retry import RetryPolicy

#: The client's ``on_response`` hook: (method, route template, status, seconds).
ResponseObserver = Callable[[str, str, "int | str", float], None]
#: Builds the response observer of one connector, from its name.
ObserverFactory = Callable[[str], ResponseObserver]
#: Builds the client of a connector (``make_client`` with the process's broker URL bound, or a test's fake).
ClientFactory = Callable[[ConnectorConfig], JumpCloudClient]

_observer: ObserverFactory | None = None


def observe_responses(observer: ObserverFactory | None) -> None:
    """Have every client built from now on report its responses to ``observer(connector name)``; None stops it."""
    global _observer
    _observer = observer


def make_client(connector: ConnectorConfig, broker_url: str | None = None, *,
                base_url: str | None = None) -> JumpCloudClient:
    """The API client for a connector; the key is read here, at the last moment, and never stored. With
    fleet-wide limits configured, the client also takes a slot of the connector's budget in Redis (one budget
    per key, whichever host: ``base_url`` names another, e.g. the Directory Insights API's)."""
    limiter = None
    if broker_url and (connector.shared_max_in_flight or connector.rate_limit):
        from jumpcloud.budget import RedisBudget

        limiter = RedisBudget(broker_url, connector.budget_name, max_in_flight=connector.shared_max_in_flight,
                              rate=connector.rate_limit)
    return JumpCloudClient(
        base_url=base_url or connector.base_url, api_key=connector.api_key(), org_id=connector.org_id,
        timeout=connector.timeout, max_in_flight=connector.max_in_flight,
        retry=RetryPolicy(max_attempts=connector.max_attempts, base_delay=connector.backoff_base),
        verify=str(connector.ca_bundle) if connector.ca_bundle else True,
        on_response=_observer(connector.name) if _observer is not None else None,
        limiter=limiter,
    )


def describe_error(exc: BaseException) -> str:
    """A one-line error for the run or request record. Our errors never carry the key; other text is cut short."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:2000]
