"""The API phase (``--profiles api``): provisioning through ``jumpsync api`` as a ticketing system calls it.

The ``small`` tenant is synced once (so that the approval rule can match a group by its name), then, with the
simulator's latency at 0 so that what is measured is jumpsync's own cost: one ``jumpsync api`` process, the
provisioning workers (``--provision-workers`` on threads), tokens made as ``jumpsync tokens create`` makes them, and the load
(``bench/api_load.py``) in a process of its own. The connector ``bench`` has one approval rule, on one group
chosen by name (as an admin group would be); the direct requests go to every other group.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench import fleet as fleet_mod
from bench.api_load import APPROVE_TOKEN_ENV, SUBMIT_TOKEN_ENV
from bench.fleet import CONNECTOR, KEY_ENV, Fleet, Simulator, free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
#: The requests of the load: a warm-up of 5, then these (overridable on the command line of ``bench.run``).
SEQUENTIAL, BURST, APPROVALS, CLIENTS = 100, 1000, 50, 8


class ApiFleet(Fleet):
    """The bench fleet with an approval rule on ``bench``: ``group.add-member`` into the group ``approval_group``
    waits for one approver."""

    def __init__(self, directory: Path, broker_url: str, database_url: str, sim: Simulator, in_flight: int,
                 approval_group: str) -> None:
        self.approval_group = approval_group
        super().__init__(directory, broker_url, database_url, sim, in_flight)

    def _config(self, limits: tuple[int, float] | None, events_interval: str | None) -> str:
        return (super()._config(None, None)
                + '\n[[connectors.provisioning.approval]]\nactions = ["group.add-member"]\n'
                + f"targets = [{json.dumps(self.approval_group)}]\napprovers = 1\n")


def approval_group(dump: dict) -> dict:
    """The group the approval rule names: the first by name whose name has no glob characters."""
    plain = [g for g in dump["groups"] if not any(c in g["name"] for c in "*?[]")]
    return min(plain, key=lambda g: g["name"])


def pairs(dump: dict, group: dict, direct: int, approval: int, seed: int = 7) -> dict[str, list[list[str]]]:
    """``direct`` distinct (group, user) non-member pairs outside ``group``, and ``approval`` into it."""
    rng = random.Random(seed)
    users = [u["_id"] for u in dump["users"]]
    members = {g["id"]: set(g["members"]) for g in dump["groups"]}
    others = [g for g in members if g != group["id"]]
    chosen: set[tuple[str, str]] = set()
    out: list[list[str]] = []
    while len(out) < direct:
        pair = (rng.choice(others), rng.choice(users))
        if pair[1] not in members[pair[0]] and pair not in chosen:
            chosen.add(pair)
            out.append(list(pair))
    outsiders = [u for u in users if u not in members[group["id"]]]
    return {"direct": out, "approval": [[group["id"], u] for u in rng.sample(outsiders, approval)]}


class ApiServer:
    """``python -m cli api`` on a free loopback port, with the fleet's database and broker, no JumpCloud key."""

    def __init__(self, fleet: Fleet) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = fleet.directory / "api.log"
        env = {k: v for k, v in fleet.env.items() if k != KEY_ENV}
        self.proc = subprocess.Popen([sys.executable, "-m", "cli", "api", "--port", str(self.port),
                                      "--loglevel", "warning"], env=env, cwd=ROOT, stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jumpsync api exited {self.proc.returncode}: see {self.log}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"jumpsync api did not answer within {timeout:.0f}s: see {self.log}")

    def stop(self) -> None:
        stop_process(self.proc)


def tokens(engine) -> dict[str, str]:
    """A ticketing system's token and an approver's, made as ``jumpsync tokens create`` makes them."""
    from auth.tokens import create_token

    submit, _ = create_token(engine, "bench-ticketing", [f"provision:{CONNECTOR}:group.add-member",
                                                         f"read:{CONNECTOR}"], None, created_by="bench")
    approve, _ = create_token(engine, "bench-approver", [f"approve:{CONNECTOR}", f"read:{CONNECTOR}"], None,
                              created_by="bench")
    return {SUBMIT_TOKEN_ENV: submit, APPROVE_TOKEN_ENV: approve}


def run_load(fleet: Fleet, sim: Simulator, engine, api: ApiServer, directory: Path, servers: dict[str, int],
             sizes: dict[str, int]) -> dict:
    """Run ``bench.api_load`` against ``api`` and split the CPU it cost by process."""
    dump = sim.dump()
    group = approval_group(dump)
    pairs_file = directory / "api-pairs.json"
    pairs_file.write_text(json.dumps(pairs(dump, group, 5 + sizes["sequential"] + sizes["burst"],
                                           sizes["approvals"])))
    out = directory / "api.json"
    components = {"api": [api.proc.pid],
                  "workers": [w.proc.pid for w in fleet.workers if w.queues == "provisioning"],
                  "sync workers": [w.proc.pid for w in fleet.workers if w.queues != "provisioning"],
                  "simulator": [sim.proc.pid], **{name: [pid] for name, pid in servers.items()}}

    def split() -> dict[str, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {**fleet_mod.cpu_by_component(components), "load": children.ru_utime + children.ru_stime}

    env = {**{k: v for k, v in fleet.env.items() if k != KEY_ENV}, **tokens(engine)}
    busy, before = fleet_mod.machine_busy_seconds(), split()
    subprocess.run([sys.executable, "-m", "bench.api_load", "--url", api.url, "--pairs", str(pairs_file),
                    "--sequential", str(sizes["sequential"]), "--burst", str(sizes["burst"]),
                    "--clients", str(sizes["clients"]), "--approvals", str(sizes["approvals"]), "--out", str(out)],
                   cwd=ROOT, env=env, check=True, timeout=900)
    result = json.loads(out.read_text())
    busy = fleet_mod.machine_busy_seconds() - busy
    spent = {name: seconds - before[name] for name, seconds in split().items()}
    total = 5 + sizes["sequential"] + sizes["burst"] + sizes["approvals"]
    result["cpu_ms_per_request"] = {name: round(seconds * 1000 / total, 2) for name, seconds in spent.items()}
    result["other_cpu_s"] = round(max(0.0, busy - sum(spent.values())), 2)
    result["approval_group"] = group["name"]
    result["loadavg_1m_at_start"] = round(os.getloadavg()[0], 2)
    seq, appr = result["sequential"]["latency_ms"], result["approval"]["machine_latency_ms"]
    if seq and appr:
        result["approval"]["overhead_ms"] = {q: round(appr[q] - seq[q], 2) for q in ("p50", "p95")}
    return result
