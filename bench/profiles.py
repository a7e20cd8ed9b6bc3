"""Named tenant profiles (issue 7). Each is a fixed ``TenantSpec``: same seed, same tenant, ids included.

Densities are means of the generator's skewed (exponential) distributions, so some groups are empty and a few
are several times the mean, as in real orgs.
"""

from __future__ import annotations

from dataclasses import asdict

from simulator.generator import TenantSpec

PROFILES: dict[str, TenantSpec] = {
    # The generator's default densities: 8 members per group, 2 groups and 4 users bound per app.
    "small": TenantSpec(seed=101, users=1_000, admins=20, groups=50, apps=30,
                        avg_members_per_group=8.0, groups_per_app=2.0, users_per_app=4.0),
    # Issue 7: 1,000 groups averaging 60 members; 300 apps each bound to ~3 groups and ~10 users.
    "large": TenantSpec(seed=102, users=20_000, admins=50, groups=1_000, apps=300,
                        avg_members_per_group=60.0, groups_per_app=3.0, users_per_app=10.0),
    # For memory and growth: the densities of `large`, five times the users and groups.
    "xl": TenantSpec(seed=103, users=100_000, admins=100, groups=5_000, apps=1_000,
                     avg_members_per_group=60.0, groups_per_app=3.0, users_per_app=10.0),
    # One organisation of the MSP phase (bench/msp.py), which serves --msp-orgs of them behind one key (org i
    # with seed 201 + i): small, as most of an MSP's customers are. The generator's default densities.
    "msp": TenantSpec(seed=201, users=80, admins=4, groups=8, apps=5),
}

#: How long one sync of a profile may take before the bench gives up on it (seconds).
SYNC_TIMEOUT = {"small": 180, "large": 900, "xl": 3600}


def spec(name: str) -> TenantSpec:
    try:
        return PROFILES[name]
    except KeyError:
        raise SystemExit(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


def describe(name: str) -> dict:
    return {"name": name, **{k: v for k, v in asdict(spec(name)).items() if k != "custom_roles"}}
