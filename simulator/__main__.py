"""`python -m simulator`: serve a generated JumpCloud org without the jumpsync CLI.

    JUMPSYNC_SIM_API_KEY=... python -m simulator --users 1000 --groups 50 --port 8765
"""

from __future__ import annotations

import argparse
import sys

from simulator.cli import API_KEY_ENV, DEFAULT_PORT, SimulatorConfigError, serve


def _retry_after(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError('expected seconds or "auto"') from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--admins", type=int, default=10)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--apps", type=int, default=5)
    parser.add_argument("--avg-members", type=float, default=8.0, help="mean members per group")
    parser.add_argument("--big-groups", type=int, default=0, help="groups holding half of all users")
    parser.add_argument("--orgs", type=int, default=1, help="more than 1 serves them multi-tenant")
    parser.add_argument("--multi-tenant", action="store_true", help="require x-org-id even with one org")
    parser.add_argument("--api-key-file", help=f"file holding the API key (default: ${API_KEY_ENV})")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second before 429")
    parser.add_argument("--retry-after", type=_retry_after, default=None, help='seconds or "auto"; omitted: no Retry-After header')
    parser.add_argument("--allow-remote", action="store_true", help="listen on a non-loopback address")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    try:
        serve(host=args.host, port=args.port, seed=args.seed, users=args.users, admins=args.admins,
              groups=args.groups, apps=args.apps, orgs=args.orgs, api_key_file=args.api_key_file,
              latency_ms=args.latency_ms, error_rate=args.error_rate, rate_limit_rps=args.rate_limit,
              retry_after=args.retry_after, avg_members_per_group=args.avg_members, big_groups=args.big_groups,
              multi_tenant=True if args.multi_tenant else None, allow_remote=args.allow_remote,
              log_level=args.log_level)
    except SimulatorConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
