"""Benchmark of the access-insight commands (docs/access.md) on a generated 100k-user tenant.

A plain script, not a test:

    .venv/bin/python bench/access_bench.py                      # fill var/bench/access-*.db once, then time
    .venv/bin/python bench/access_bench.py --refill --explain    # rebuild it; print the query plans
    .venv/bin/python bench/access_bench.py --profile xl          # the xl tenant of bench/profiles.py
    .venv/bin/python bench/access_bench.py --database-url postgresql://...   # an empty PostgreSQL database

The tenant comes from simulator.generator (TenantSpec, generate_tenant), mapped by the connector's own
mappers and written by the store's writers; role assignments, admin links and access through groups are
derived by the sync's own derive functions, so the database holds what a real sync of that org would.
Group and app sizes are means of skewed (exponential) distributions, as in the generator.

Timed, each ``--repeat`` times on a warm engine (best and median reported): the query function, then the
query plus rendering its output (JSON, CSV) into memory, as the command does; then the worker's rendering of
the stored report and export (access.snapshots); finally each command end to end in a fresh
``python -m cli`` process, ``--repeat`` times (wall time, including interpreter start-up and imports,
which ``jumpsync --help`` alone measures): ``report`` and ``export`` as they run after a sync (serving the
stored rendering), and with ``--live`` (computed from the tables).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import event, func, select, text, update
from sqlmodel import Session

from access import export, report
from access import queries as access
from connector.admins import map_admin
from connector.apps import map_app
from connector.groups import map_group
from connector.records import GrantRecord
from connector.users import map_user
from models import history
from models.bulk import chunks
from models.db import make_engine
from models.migrate import upgrade
from models.store import GrantWriter, ResourceWriter
from models.tables import Connector, Grant, Resource
from pipeline.derived import derive_admin_links_part, derive_app_via_group_part, derive_roles_part
from simulator.generator import TenantSpec, generate_tenant

CONNECTOR = "bench"
SCOPES_PER_WRITE = 500


def fill(engine, spec: TenantSpec, deleted_users: int = 0) -> None:
    clock = time.perf_counter()
    tenant = generate_tenant(spec)
    print(f"generated the tenant in {time.perf_counter() - clock:.1f}s", flush=True)
    clock = time.perf_counter()
    now = datetime.now(timezone.utc)
    with Session(engine) as session:
        row = Connector(name=CONNECTOR, base_url="http://127.0.0.1:1")
        session.add(row)
        session.commit()
        cid = row.id
    for kind, mapper, records in (("user", map_user, tenant.users), ("admin", map_admin, tenant.admins),
                                  ("group", map_group, tenant.groups), ("app", map_app, tenant.apps)):
        writer = ResourceWriter(engine, cid, kind, now)
        mapped = [mapper(record) for record in records.values()]
        for start in range(0, len(mapped), 5000):
            writer.write(mapped[start:start + 5000])
    _write_grants(engine, cid, "group", "group", now,
                  {gid: [GrantRecord("group", gid, "member", "user", uid) for uid in members]
                   for gid, members in tenant.members.items()})
    _write_grants(engine, cid, "app", "app", now,
                  {aid: [GrantRecord("app", aid, "access", "user", uid) for uid in tenant.app_users[aid]]
                   + [GrantRecord("app", aid, "access", "group", gid) for gid in tenant.app_groups[aid]]
                   for aid in tenant.apps})
    derive_roles_part(engine, cid)
    derive_admin_links_part(engine, cid)
    derive_app_via_group_part(engine, cid)
    if deleted_users:
        _delete_users(engine, cid, sorted(tenant.users)[:deleted_users], now)
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    print(f"wrote the database in {time.perf_counter() - clock:.1f}s", flush=True)


def _delete_users(engine, cid: int, ids: list[str], now) -> None:
    """Users who left, as a sync records them: the row and its grants marked deleted. The first 10 keep their
    grants live (a stale part), for the report's deleted_principal_granted check to find."""
    R, G = Resource.__table__, Grant.__table__
    with Session(engine) as session:
        for chunk in chunks(ids):
            session.execute(update(R).where(R.c.connector_id == cid, R.c.type == "user", R.c.external_id.in_(chunk))
                            .values(deleted_at=now))
        for chunk in chunks(ids[10:]):
            session.execute(update(G).where(G.c.connector_id == cid, G.c.principal_type == "user",
                                            G.c.principal_id.in_(chunk)).values(deleted_at=now))
        session.commit()


def add_history(engine, changed_users: int = 20_000) -> None:
    """History for ``jumpsync changes``, once: a later sync in which ``changed_users`` users changed department,
    recorded by the store's own writer (the first sync is the baseline and records nothing)."""
    from connector.records import ResourceRecord
    from models.tables import Change

    with Session(engine) as session:
        cid = session.execute(select(Connector.id).where(Connector.name == CONNECTOR)).scalar_one()
        if session.execute(select(Change.id).where(Change.connector_id == cid).limit(1)).first() is not None:
            return
        R = Resource.__table__
        users = session.execute(select(R.c.external_id, R.c.name, R.c.email, R.c.status, R.c.profile).where(
            R.c.connector_id == cid, R.c.type == "user", R.c.deleted_at.is_(None))
            .order_by(R.c.external_id).limit(changed_users)).all()
    writer = ResourceWriter(engine, cid, "user", datetime.now(timezone.utc))
    records = [ResourceRecord("user", rid, name, email, status, {**(profile or {}), "department": "Moved"})
               for rid, name, email, status, profile in users]
    for start in range(0, len(records), 5000):
        writer.write(records[start:start + 5000])


def _write_grants(engine, cid: int, resource_type: str, source: str, now, scopes: dict) -> None:
    writer = GrantWriter(engine, cid, resource_type, source, now)
    items = list(scopes.items())
    for start in range(0, len(items), SCOPES_PER_WRITE):
        writer.write_scopes(dict(items[start:start + SCOPES_PER_WRITE]))


def describe(engine) -> dict:
    with Session(engine) as session:
        cid = session.execute(select(Connector.id).where(Connector.name == CONNECTOR)).scalar_one()
        R, G = Resource.__table__, Grant.__table__
        counts = dict(session.execute(select(R.c.type, func.count()).where(R.c.connector_id == cid,
                                                                           R.c.deleted_at.is_(None))
                                      .group_by(R.c.type)).all())
        grants = dict(session.execute(select(G.c.source, func.count()).where(G.c.connector_id == cid,
                                                                            G.c.deleted_at.is_(None))
                                      .group_by(G.c.source)).all())
        deleted = session.execute(select(func.count()).select_from(R).where(
            R.c.connector_id == cid, R.c.deleted_at.is_not(None))).scalar_one()
        big_group = session.execute(
            select(G.c.resource_id, func.count().label("n")).where(
                G.c.connector_id == cid, G.c.resource_type == "group", G.c.deleted_at.is_(None))
            .group_by(G.c.resource_id).order_by(text("n DESC")).limit(1)).one()
        big_app = session.execute(
            select(G.c.resource_id, func.count().label("n")).where(
                G.c.connector_id == cid, G.c.resource_type == "app", G.c.deleted_at.is_(None))
            .group_by(G.c.resource_id).order_by(text("n DESC")).limit(1)).one()
        # The person: the admin-linked user holding the most grants (user and admin accounts together).
        linked = session.execute(select(R.c.external_id, R.c.linked_user_id).where(
            R.c.connector_id == cid, R.c.type == "admin", R.c.linked_user_id.is_not(None))).all()
        held = dict(session.execute(select(G.c.principal_id, func.count()).where(
            G.c.connector_id == cid, G.c.principal_id.in_([u for _, u in linked]), G.c.deleted_at.is_(None))
            .group_by(G.c.principal_id)).all())
        live = set(session.execute(select(R.c.external_id).where(
            R.c.connector_id == cid, R.c.type == "user", R.c.external_id.in_([u for _, u in linked]),
            R.c.deleted_at.is_(None))).scalars())
        person = max((pair for pair in linked if pair[1] in live), key=lambda pair: held.get(pair[1], 0))[1]
        user = session.execute(select(R.c.email, R.c.profile).where(
            R.c.connector_id == cid, R.c.type == "user", R.c.external_id == person)).one()
    return {"resources": counts, "deleted": deleted, "grants": grants, "big_group": tuple(big_group),
            "big_app": tuple(big_app),
            "person_id": person, "person_email": user.email, "person_username": (user.profile or {}).get("username")}


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        clock = time.perf_counter()
        fn()
        times.append(time.perf_counter() - clock)
    return min(times), statistics.median(times)


def _render_json(data) -> str:
    """What the command writes (access.render.print_json), into memory."""
    from contextlib import redirect_stdout

    from access.render import print_json

    out = io.StringIO()
    with redirect_stdout(out):
        print_json(data)
    return out.getvalue()


def _render_export(engine, fmt: str) -> int:
    """What ``jumpsync export`` writes (access.render), into memory."""
    from access.render import ExportFormat, export_lines, write_export

    out = io.StringIO()
    return write_export(out, export_lines(engine, CONNECTOR, ExportFormat(fmt)), ExportFormat(fmt))


def _render_changes(rows: list) -> str:
    """What ``jumpsync changes --json`` writes (cli.changes)."""
    import json

    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


def _render_report_csv(engine) -> str:
    from access.render import csv_rows

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(report.REPORT_COLUMNS)
    writer.writerows(csv_rows(report.finding_row(f) for f in report.report(engine, CONNECTOR)["findings"]))
    return out.getvalue()


def explain(engine, label: str, fn: Callable[[], object]) -> None:
    """Print the plan of every statement ``fn`` runs."""
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith("EXPLAIN"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        result = fn()
        if hasattr(result, "__next__"):
            next(result, None)
            result.close()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    print(f"\n--- {label}")
    with engine.connect() as conn:
        for statement, parameters in statements:
            print("  " + " ".join(statement.split())[:160] + " ...")
            for row in conn.exec_driver_sql(prefix + statement, parameters):
                print("      " + " | ".join(str(v) for v in row))


def _arguments() -> argparse.Namespace:
    """The tenant's size (or a named profile), the database, and what to time."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="default: sqlite:///var/bench/access.db")
    parser.add_argument("--refill", action="store_true", help="drop the database file and fill it again")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=5_000)
    parser.add_argument("--apps", type=int, default=1_000)
    parser.add_argument("--admins", type=int, default=100)
    parser.add_argument("--avg-members", type=float, default=20.0)
    parser.add_argument("--groups-per-app", type=float, default=3.0)
    parser.add_argument("--users-per-app", type=float, default=10.0)
    parser.add_argument("--big-groups", type=int, default=0, help="'All staff' groups holding half the users")
    parser.add_argument("--deleted-users", type=int, default=5_000,
                        help="users (beyond --users) marked deleted with their grants, as people who left")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", default=None,
                        help="a tenant of bench/profiles.py (e.g. xl) instead of the sizes above")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--explain", action="store_true", help="print the query plans")
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end command timings")
    return parser.parse_args()


def _database_url(args: argparse.Namespace) -> str:
    """The URL given, or a SQLite file named after the tenant (emptied first with ``--refill``)."""
    url = args.database_url
    if url is None:
        name = args.profile or f"{args.users}-{args.big_groups}"
        path = ROOT / "var" / "bench" / f"access-{name}-{args.deleted_users}.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        if args.refill:
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    return url


def _fill_once(engine, args: argparse.Namespace) -> None:
    """Generate and write the tenant unless the database already holds it."""
    with Session(engine) as session:
        if session.execute(select(Connector.id).where(Connector.name == CONNECTOR)).first() is not None:
            return
    if args.profile:
        from dataclasses import replace

        from bench.profiles import spec as profile_spec

        base = profile_spec(args.profile)
        tenant = replace(base, users=base.users + args.deleted_users)
    else:
        tenant = TenantSpec(seed=args.seed, users=args.users + args.deleted_users, admins=args.admins,
                            groups=args.groups, apps=args.apps, avg_members_per_group=args.avg_members,
                            groups_per_app=args.groups_per_app, users_per_app=args.users_per_app,
                            big_groups=args.big_groups)
    fill(engine, tenant, args.deleted_users)


def main() -> None:
    args = _arguments()
    url = _database_url(args)
    engine = make_engine(url)
    upgrade(engine)
    _fill_once(engine, args)
    add_history(engine)
    info = describe(engine)
    print(f"database: {engine.url.render_as_string(hide_password=True)}")
    print(f"live resources: {info['resources']}; deleted: {info['deleted']}")
    print(f"live grants: {info['grants']} (total {sum(info['grants'].values())})")
    print(f"biggest group {info['big_group'][0]}: {info['big_group'][1]} members; "
          f"biggest app {info['big_app'][0]}: {info['big_app'][1]} grants; person {info['person_id']}")

    group, app = f"group:{info['big_group'][0]}", f"app:{info['big_app'][0]}"
    cases: list[tuple[str, Callable[[], object], list[str]]] = [
        ("access by id", lambda: access.access(engine, CONNECTOR, info["person_id"]),
         ["access", CONNECTOR, info["person_id"], "--json"]),
        ("access by email", lambda: access.access(engine, CONNECTOR, info["person_email"].upper()),
         ["access", CONNECTOR, info["person_email"].upper(), "--json"]),
        ("access by username", lambda: access.access(engine, CONNECTOR, info["person_username"]),
         ["access", CONNECTOR, info["person_username"], "--json"]),
        ("who-has biggest group", lambda: access.who_has(engine, CONNECTOR, group),
         ["who-has", CONNECTOR, group, "--json"]),
        ("who-has biggest app", lambda: access.who_has(engine, CONNECTOR, app),
         ["who-has", CONNECTOR, app, "--json"]),
        ("report", lambda: report.report(engine, CONNECTOR), ["report", CONNECTOR, "-o", "json"]),
        ("export", lambda: list(export.iter_export(engine, CONNECTOR)), ["export", CONNECTOR, "-o", "csv"]),
        ("changes (10,000 of 20,000)", lambda: history.changes(engine, CONNECTOR), ["changes", CONNECTOR, "--limit", "10000",
                                                                                   "--json"]),
    ]
    rendered: dict[str, Callable[[], object]] = {
        "access by id": lambda: _render_json(access.access(engine, CONNECTOR, info["person_id"])),
        "access by email": lambda: _render_json(access.access(engine, CONNECTOR, info["person_email"].upper())),
        "access by username": lambda: _render_json(access.access(engine, CONNECTOR, info["person_username"])),
        "who-has biggest group": lambda: _render_json(access.who_has(engine, CONNECTOR, group)),
        "who-has biggest app": lambda: _render_json(access.who_has(engine, CONNECTOR, app)),
        "report": lambda: _render_json(report.report(engine, CONNECTOR)),
        "export": lambda: _render_export(engine, "csv"),
        "changes (10,000 of 20,000)": lambda: _render_changes(history.changes(engine, CONNECTOR)),
    }
    extra = {"report as CSV": lambda: _render_report_csv(engine),
             "export as JSON": lambda: _render_export(engine, "json")}

    print(f"\n{'case':<24} {'rows':>7} {'query best':>11} {'median':>8} {'+render best':>13} {'median':>8}")
    for label, fn, _ in cases:
        fn()  # warm the engine and the page cache
        result = fn()
        rows = (len(result["access"]) if "access" in result else len(result["holders"]) if "holders" in result
                else len(result["findings"])) if isinstance(result, dict) else len(result)
        q_best, q_med = timed(fn, args.repeat)
        r_best, r_med = timed(rendered[label], args.repeat)
        print(f"{label:<24} {rows:>7} {q_best:>10.3f}s {q_med:>7.3f}s {r_best:>12.3f}s {r_med:>7.3f}s", flush=True)
    for label, fn in extra.items():
        best, med = timed(fn, args.repeat)
        print(f"{label:<24} {'':>7} {'':>11} {'':>8} {best:>12.3f}s {med:>7.3f}s", flush=True)

    if args.explain:
        for label, fn, _ in cases:
            explain(engine, label, fn)

    if not args.no_cli:
        from access.snapshots import refresh

        done = refresh(engine, CONNECTOR, force=True)
        print(f"\nstored rendering of the report and export (the worker's jumpsync.access.refresh): "
              f"{done.seconds:.1f}s, {done.compressed_bytes / 1e6:.1f}MB compressed", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "jumpsync.toml"
            config.write_text("")
            # As an installed package runs: with its modules' bytecode cached (pip compiles it on install), which
            # PYTHONDONTWRITEBYTECODE in the environment would prevent for the source tree.
            env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
                   "JUMPSYNC_DATABASE_URL": url, "JUMPSYNC_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
            subprocess.run([sys.executable, "-m", "cli", "--help"], env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, check=True)  # writes the bytecode caches
            print(f"\nend to end, a fresh process each, {args.repeat} runs (wall time):")
            print(f"  {'command':<32} {'best':>7} {'median':>7}")
            tables = [("report as a table", None, ["report", CONNECTOR]),
                      ("who-has biggest app, table", None, ["who-has", CONNECTOR, app]),
                      ("changes as a table", None, ["changes", CONNECTOR]),
                      ("report as CSV", None, ["report", CONNECTOR, "--format", "csv"]),
                      ("export as JSON", None, ["export", CONNECTOR, "--format", "json"]),
                      ("report --live", None, ["report", CONNECTOR, "--format", "json", "--live"]),
                      ("report as a table --live", None, ["report", CONNECTOR, "--live"]),
                      ("export --live", None, ["export", CONNECTOR, "--format", "csv", "--live"]),
                      ("export as JSON --live", None, ["export", CONNECTOR, "--format", "json", "--live"])]
            for label, _, argv in [("jumpsync --help (start-up only)", None, ["--help"]), *cases, *tables]:
                times, status = [], ""
                for _ in range(args.repeat):
                    clock = time.perf_counter()
                    done = subprocess.run([sys.executable, "-m", "cli", *argv], env=env, cwd=ROOT,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    times.append(time.perf_counter() - clock)
                    if done.returncode != 0:
                        status = f"  exit {done.returncode}: {done.stderr.decode()[-300:]}"
                        break
                print(f"  {label:<32} {min(times):6.3f}s {statistics.median(times):6.3f}s{status}", flush=True)
    engine.dispose()


if __name__ == "__main__":
    main()
