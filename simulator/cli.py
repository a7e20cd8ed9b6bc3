"""Run the simulator from a command line: `jumpsync simulator` (cli/processes.py calls `serve`) or
`python -m simulator`.

The API key is a secret even here: it comes from `JUMPSYNC_SIM_API_KEY` or a key file and is never printed.
The server listens on loopback unless told otherwise, because the /_sim control endpoints take no key.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from jumpcloud.urls import is_loopback_host
from simulator.faults import Faults, RateLimit
from simulator.generator import TenantSpec, generate_tenant, multi_tenant_spec
from simulator.server import SimulatorServer
from simulator.state import SimulatorState

API_KEY_ENV = "JUMPSYNC_SIM_API_KEY"
DEFAULT_PORT = 8765


class SimulatorConfigError(ValueError):
    """A setting that prevents the simulator from starting (the message never holds the key)."""


def resolve_api_key(api_key: str | None = None, api_key_file: str | os.PathLike[str] | None = None) -> str:
    """The key to accept: given explicitly, else read from `api_key_file`, else from $JUMPSYNC_SIM_API_KEY."""
    if api_key:
        return api_key
    if api_key_file:
        try:
            key = Path(api_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SimulatorConfigError(f"cannot read the API key file {api_key_file}: {exc.strerror}") from None
        if not key:
            raise SimulatorConfigError(f"the API key file {api_key_file} is empty")
        return key
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise SimulatorConfigError(f"no API key: set {API_KEY_ENV} or pass an API key file")
    return key


def build_state(*, api_key: str, seed: int = 0, users: int = 200, admins: int = 10, groups: int = 20,
                apps: int = 5, orgs: int = 1, multi_tenant: bool | None = None, spec: TenantSpec | None = None,
                faults: Faults | None = None) -> SimulatorState:
    """A state with `orgs` generated tenants (org i uses seed + i). More than one org means multi-tenant mode."""
    if orgs < 1:
        raise SimulatorConfigError("orgs must be at least 1")
    multi = orgs > 1 if multi_tenant is None else multi_tenant
    base = spec or TenantSpec(users=users, admins=admins, groups=groups, apps=apps)
    if multi:
        base = multi_tenant_spec(base)
    tenants = [generate_tenant(replace(base, seed=seed + i)) for i in range(orgs)]
    return SimulatorState(orgs={t.org_id: t for t in tenants}, api_key=api_key, multi_tenant=multi,
                          faults=faults or Faults())


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, seed: int = 0, users: int = 200, admins: int = 10,
          groups: int = 20, apps: int = 5, orgs: int = 1, api_key: str | None = None,
          api_key_file: str | os.PathLike[str] | None = None, latency_ms: float = 0.0, error_rate: float = 0.0,
          rate_limit_rps: float | None = None, retry_after: float | str | None = None,
          avg_members_per_group: float = 8.0, big_groups: int = 0, multi_tenant: bool | None = None,
          allow_remote: bool = False, log_level: str = "warning",
          echo: Callable[[str], None] = print) -> None:
    """Generate the org(s) and serve until interrupted. `api_key` is for callers that already read the env var
    or file; it is never echoed."""
    if not allow_remote and not is_loopback_host(host):
        raise SimulatorConfigError(f"{host} is not a loopback address: /_sim takes no key, pass allow_remote "
                                   "to listen there anyway")
    key = resolve_api_key(api_key, api_key_file)
    try:
        faults = Faults(latency_ms=latency_ms, error_rate=error_rate,
                        rate_limit=RateLimit(rate_limit_rps, retry_after=retry_after) if rate_limit_rps else None)
    except ValueError as exc:
        raise SimulatorConfigError(str(exc)) from None
    spec = TenantSpec(users=users, admins=admins, groups=groups, apps=apps,
                      avg_members_per_group=avg_members_per_group, big_groups=big_groups)
    started = time.perf_counter()
    state = build_state(api_key=key, seed=seed, orgs=orgs, multi_tenant=multi_tenant, spec=spec, faults=faults)
    took = time.perf_counter() - started
    state.sim_loopback_only = not allow_remote
    server = SimulatorServer(state, host=host, port=port, log_level=log_level)
    echo(f"JumpCloud simulator: {len(state.orgs)} org(s), {users} users, {admins} admins, {groups} groups, "
         f"{apps} apps each (seed {seed}, generated in {took:.2f}s)")
    for org_id, tenant in state.orgs.items():
        echo(f"  org {org_id}  {tenant.display_name}")
    mode = "multi-tenant: send x-org-id" if state.multi_tenant else "single-tenant"
    source = "the caller" if api_key else "the key file" if api_key_file else f"${API_KEY_ENV}"
    server.serve_forever(on_ready=lambda url: echo(f"listening on {url} ({mode}); API key from {source}; "
                                                   "Ctrl+C to stop"))
