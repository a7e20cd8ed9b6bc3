"""The simulator of a bench run, in its own process (so its CPU is not the harness's or a worker's):

    JUMPSYNC_SIM_API_KEY=... python -m bench.simproc --profile large --latency-ms 20 --port 8765
    JUMPSYNC_SIM_API_KEY=... python -m bench.simproc --profile msp --orgs 50 --latency-ms 20 --port 8765

The tenant is the profile's fixed TenantSpec (bench.profiles), which `python -m simulator` cannot express
(it has no knobs for groups and users per app); with ``--orgs`` N > 1, N orgs of it (org i with the profile's
seed + i), served multi-tenant. The key comes from the environment and is never printed.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.profiles import spec
from simulator.cli import build_state, resolve_api_key
from simulator.faults import Faults
from simulator.server import SimulatorServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simproc")
    parser.add_argument("--profile", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--orgs", type=int, default=1, help="more than 1: that many orgs, multi-tenant")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    tenant_spec = spec(args.profile)
    # build_state sets each org's seed to `seed + i`: pass the profile's own seed, or it would be 0.
    state = build_state(api_key=resolve_api_key(), seed=tenant_spec.seed, spec=tenant_spec, orgs=args.orgs,
                        faults=Faults(latency_ms=args.latency_ms))
    print(f"generated {args.profile} ({len(state.orgs)} org(s)) in {time.perf_counter() - started:.1f}s",
          flush=True)
    server = SimulatorServer(state, host="127.0.0.1", port=args.port)
    try:
        server.serve_forever(on_ready=lambda url: print(f"listening on {url}", flush=True))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
