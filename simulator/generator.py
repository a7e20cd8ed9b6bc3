"""Deterministic generation of a realistic, untidy JumpCloud organisation.

Why untidy: real tenants return `""` and `null` in string fields, `attributes: null`, records without `state`,
staged, suspended and locked users, managers given as an id, `""` or `null`, and role names spelt two ways.
A connector that only ever saw clean data would break on its first real org, so the generator produces all of it.

Why deterministic: tests and benchmarks compare runs, so everything (ids included) comes from one
`random.Random(seed)`; the global `random` module is never used.
"""

from __future__ import annotations

import enum
import functools
import gc
import hashlib
import random
import unicodedata
from dataclasses import dataclass, replace
from typing import Any, Literal

from simulator.model import OrderedIdSet, Tenant, iso_time, object_id

# Built-in administrator roles. Sources disagree on the case of "With", so each org picks a spelling and a share
# of admin records carries the other one.
BUILTIN_ROLES = (
    "Administrator With Billing",
    "Administrator",
    "Manager",
    "Command Runner With Billing",
    "Command Runner",
    "Help Desk",
    "Billing Only",
    "Read Only",
)
# Relative frequency of each built-in role among generated admins (custom roles get weight 1 each).
_ROLE_WEIGHTS = (3, 6, 4, 1, 1, 4, 1, 3)

_FIRST = (
    "Alice", "Bob", "Carol", "David", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Niaj",
    "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Wendy", "José", "Zoë", "Łukasz", "Søren",
    "Ångström", "Björk", "Ólafur", "Chloé", "François", "Müller", "Ayşe", "Đorđe", "Nguyễn", "Małgorzata",
    "Renée", "Siobhán", "Jürgen", "Íñigo", "Anaïs", "Dmitrí", "Мария", "Александр", "王", "李娜", "さくら",
    "محمد", "Δημήτρης", "Priya", "Aarav", "Fatima", "Kwame", "Amara", "Hiroshi", "Ji-woo", "Mateo", "Sofia",
)
_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "García", "Martínez", "Rodríguez", "Müller", "Schröder",
    "Kowalski", "Nowak", "Dubois", "Lefèvre", "Øvergaard", "Sørensen", "Ó Briain", "O'Connor", "D'Angelo",
    "van der Berg", "de la Cruz", "Nguyễn", "Trần", "Yılmaz", "Öztürk", "Иванов", "Петрова", "张", "佐藤",
    "Παπαδόπουλος", "Haddad", "Okafor", "Mensah", "Patel", "Sharma", "Kim", "Park", "Tanaka", "Silva", "Costa",
)
_DEPARTMENTS = ("Engineering", "Sales", "Marketing", "Finance", "People", "Legal", "Support", "IT", "Operations",
                "Product", "Design", "Sécurité", "Forschung")
_TITLES = ("Engineer", "Senior Engineer", "Manager", "Director", "Analyst", "Specialist", "Intern", "VP",
           "Account Executive", "Designer", "Consultant", "Responsable")
_EMPLOYEE_TYPES = ("Full-Time", "Part-Time", "Contractor", "Intern", "Temporary")
_LOCATIONS = ("Denver", "London", "Berlin", "São Paulo", "Bengaluru", "Tokyo", "Remote", "Zürich", "Kraków")
_COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises")
_DOMAINS = ("acme.test", "globex.test", "initech.test", "umbrella.test", "hooli.test", "example.test")
_GROUP_SUFFIXES = ("Team", "All", "Admins", "Contractors", "Leads", "On-call", "Readers", "Writers", "EU", "US",
                   "Project Phoenix", "Équipe", "チーム", "Alumni")
_APP_CATALOG = (
    ("slack", "Slack"), ("github", "GitHub"), ("aws", "Amazon Web Services"), ("salesforce", "Salesforce"),
    ("zoom", "Zoom"), ("atlassian", "Atlassian Cloud"), ("googleworkspace", "Google Workspace"), ("box", "Box"),
    ("dropbox", "Dropbox Business"), ("zendesk", "Zendesk"), ("okta", "Okta"), ("notion", "Notion"),
    ("figma", "Figma"), ("miro", "Miro"), ("datadog", "Datadog"), ("pagerduty", "PagerDuty"),
)
_LOGO_COLORS = ("#202D38", "#005466", "#3E8696", "#006CAC", "#0617AC", "#7C6ADA", "#D5779D", "#9E2F00")
_MFA_STATUSES = ("NOT_ENROLLED", "ENROLLED", "PENDING_ACTIVATION", "DISABLED")

# Tenant history spans these instants (seconds since the epoch): 2016-01-01 .. 2025-06-01.
_EPOCH_START = 1451606400.0
_EPOCH_END = 1748736000.0


@dataclass(frozen=True)
class TenantSpec:
    """Knobs of a generated organisation. Averages are means of skewed (exponential) distributions, so some
    groups are empty and a few are large, as in real orgs."""

    seed: int = 0
    users: int = 200
    admins: int = 10
    groups: int = 20
    apps: int = 5
    avg_members_per_group: float = 8.0
    groups_per_app: float = 2.0
    users_per_app: float = 4.0
    big_groups: int = 0  # groups like "All Staff" holding `big_group_share` of all users (stress for paging)
    big_group_share: float = 0.5
    admin_user_overlap: float = 0.5  # share of admins who also have a system user with the same email
    custom_roles: tuple[str, ...] = ("Security Auditor", "Onboarding Coordinator")
    blank_admin_org_share: float = 0.0  # share of admins with organization "" (seen with multi-tenant admins)
    default_user_state: str = "STAGED"  # the org setting applied when POST /api/systemusers gives no state
    org_id: str | None = None  # derived from the seed when None
    domain: str | None = None  # derived from the seed when None
    display_name: str | None = None  # the org's name; derived from the domain and the seed when None


def multi_tenant_spec(spec: TenantSpec) -> TenantSpec:
    """`spec` as an org of a multi-tenant (MSP) administrator looks: some admins carry `organization` ""."""
    return replace(spec, blank_admin_org_share=max(spec.blank_admin_org_share, 0.2))


def generate_tenant(spec: TenantSpec) -> Tenant:
    """Build a Tenant from `spec`; the same spec always gives the same tenant, ids included."""
    # Millions of small dicts would trigger many full garbage collections that find nothing to free (nothing
    # here forms cycles); pausing the collector halves the time for 100k users.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(spec)
    finally:
        if was_enabled:
            gc.enable()


def _generate(spec: TenantSpec) -> Tenant:
    rng = random.Random(spec.seed)
    org_id = spec.org_id or object_id(rng, _EPOCH_START)
    domain = spec.domain or rng.choice(_DOMAINS)
    gen = _Generator(rng, spec, org_id, domain)
    roles = gen.roles()
    users = gen.users()
    user_ids = list(users)
    admins = gen.admins(users, roles)
    groups = gen.groups()
    members = {gid: OrderedIdSet(gen.sample(user_ids, spec.avg_members_per_group)) for gid in groups}
    for gid in list(groups)[: spec.big_groups]:
        members[gid] = OrderedIdSet(rng.sample(user_ids, int(len(user_ids) * spec.big_group_share)))
    apps = gen.apps()
    group_ids = list(groups)
    app_users = {aid: OrderedIdSet(gen.sample(user_ids, spec.users_per_app)) for aid in apps}
    app_groups = {aid: OrderedIdSet(gen.sample(group_ids, spec.groups_per_app)) for aid in apps}
    return Tenant(
        org_id=org_id, users=users, admins=admins, groups=groups, apps=apps, members=members,
        app_users=app_users, app_groups=app_groups, roles=roles,
        app_provisioning={aid: provision for aid in apps if (provision := app_provision(aid)) is not _OMITTED},
        default_user_state=spec.default_user_state, seed=spec.seed,
        display_name=spec.display_name or org_display_name(domain, spec.seed),
    )


def org_display_name(domain: str, seed: int) -> str:
    """A readable org name such as "Acme 3": the first label of the domain, capitalised, and the seed, which
    keeps the names of orgs generated from different seeds apart. Uses no randomness, so adding it changed no
    other generated value."""
    label = domain.split(".", 1)[0].replace("-", " ").replace("_", " ").strip()
    return f"{label.title() or 'Org'} {seed}"


# Letters that NFKD does not decompose into ASCII.
_TRANSLIT = str.maketrans({"Ł": "L", "ł": "l", "Ø": "O", "ø": "o", "Đ": "D", "đ": "d", "ß": "ss", "Æ": "AE",
                           "æ": "ae", "ı": "i"})


@functools.lru_cache(maxsize=4096)
def ascii_slug(text: str) -> str:
    """Lowercase ASCII letters and digits of `text` (accents dropped), for usernames and email local parts.
    Scripts without a Latin form (Cyrillic, Greek, CJK...) give "": callers supply a fallback."""
    folded = unicodedata.normalize("NFKD", text.translate(_TRANSLIT)).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if c.isalnum())


def _user_state(draw: float) -> tuple[str, bool, bool]:
    """(state, activated, suspended) of a user, from a uniform draw: mostly active, some staged or suspended."""
    if draw < 0.08:
        return "STAGED", False, False
    if draw < 0.15:
        return "SUSPENDED", True, True
    return "ACTIVATED", True, False


class _Generator:
    """Holds the rng and the spec while the parts of a tenant are built, in a fixed order."""

    def __init__(self, rng: random.Random, spec: TenantSpec, org_id: str, domain: str) -> None:
        self.rng = rng
        self.spec = spec
        self.org_id = org_id
        self.domain = domain
        self._ids: set[str] = set()
        rnd = rng.random

        def choice(seq: Any) -> Any:  # rng.choice, without its per-call overhead (100k users * 10 picks)
            return seq[int(rnd() * len(seq))]

        self._choice = choice

    def new_id(self, when: float) -> str:
        while True:
            oid = object_id(self.rng, when)
            if oid not in self._ids:
                self._ids.add(oid)
                return oid

    def times(self, n: int) -> list[float]:
        """`n` ascending creation instants, so that insertion order, `_id` order and `created` order agree."""
        rnd = self.rng.random
        span = _EPOCH_END - _EPOCH_START
        return sorted(_EPOCH_START + rnd() * span for _ in range(n))

    def sample(self, population: list[str], mean: float) -> list[str]:
        if not population or mean <= 0:
            return []
        k = min(len(population), int(self.rng.expovariate(1.0 / mean) + 0.5))
        return self.rng.sample(population, k)

    def untidy(self, value: Any, blank: float = 0.1, null: float = 0.1) -> Any:
        """`value`, or `""` or `None` with the given probabilities."""
        r = self.rng.random()
        if r < blank:
            return ""
        if r < blank + null:
            return None
        return value

    # ---- roles ---------------------------------------------------------------------------------------

    def roles(self) -> dict[str, str]:
        roles: dict[str, str] = {}
        for name in BUILTIN_ROLES:
            spelt = name.replace("With", "with") if self.rng.random() < 0.5 else name
            roles[self.new_id(_EPOCH_START)] = spelt
        for name in self.spec.custom_roles[:20]:  # JumpCloud allows up to 20 custom roles per org
            roles[self.new_id(_EPOCH_START)] = name
        return roles

    # ---- system users --------------------------------------------------------------------------------

    def users(self) -> dict[str, dict[str, Any]]:
        users: dict[str, dict[str, Any]] = {}
        ids: list[str] = []
        taken: set[str] = set()
        for n, when in enumerate(self.times(self.spec.users)):
            uid = self.new_id(when)
            users[uid] = self._user(n, uid, when, ids, taken)
            ids.append(uid)
        return users

    def _username(self, first: str, last: str, n: int, taken: set[str]) -> str:
        base = f"{ascii_slug(first)[:12] or 'user'}.{ascii_slug(last)[:16] or 'x'}"
        username = base if base not in taken else f"{base}{n}"
        taken.add(username)
        return username

    def _mfa(self, when: float, configured: bool) -> dict[str, Any]:
        rnd = self.rng.random
        excluded = rnd() < 0.1
        mfa: dict[str, Any] = {"configured": configured, "exclusion": excluded}
        if excluded:
            mfa["exclusionUntil"] = iso_time(when + 86400 * 30) if rnd() < 0.5 else None
        return mfa

    def _manager(self, ids: list[str]) -> str | None:
        """Another user's id (an earlier one), "" or None: all three occur in real records."""
        r_manager = self.rng.random()
        if r_manager < 0.4 and ids:
            return str(self._choice(ids))
        return "" if r_manager < 0.7 else None

    def _attributes(self, n: int) -> list[dict[str, str]] | None:
        r_attr = self.rng.random()
        if r_attr < 0.3:
            return None
        if r_attr < 0.7:
            return []
        return [{"name": "badge", "value": f"{n:06d}"}, {"name": "shirtSize", "value": self._choice("SMLX")}]

    def _user(self, n: int, uid: str, when: float, ids: list[str], taken: set[str]) -> dict[str, Any]:
        """One system user record; `ids` are the users made before it (its possible managers)."""
        rnd = self.rng.random
        choice = self._choice
        first, last = choice(_FIRST), choice(_LAST)
        username = self._username(first, last, n, taken)
        email = f"{username}@{self.domain}"
        if rnd() < 0.03:  # a few records keep the case they were typed in
            email = email[0].upper() + email[1:]
        state, activated, suspended = _user_state(rnd())
        locked = activated and rnd() < 0.03
        mfa_configured = rnd() < 0.6
        mfa = self._mfa(when, mfa_configured)
        manager = self._manager(ids)
        attributes = self._attributes(n)
        record: dict[str, Any] = {
            "_id": uid,
            "id": uid,
            "account_locked": locked,
            "account_locked_date": iso_time(when + 3600) if locked else None,
            "activated": activated,
            "addresses": [],
            "allow_public_key": True,
            "alternateEmail": self.untidy(f"{username}@personal.test", 0.5, 0.3),
            "attributes": attributes,
            "badLoginAttempts": 5 if locked else 0,
            "company": self.untidy(choice(_COMPANIES), 0.4, 0.2),
            "costCenter": self.untidy(f"CC-{100 + int(rnd() * 900)}", 0.3, 0.3),
            "created": iso_time(when),
            "creationSource": choice(("jumpcloud:console", "jumpcloud:api", "jumpcloud:scim", "")),
            "department": self.untidy(choice(_DEPARTMENTS)),
            "description": None if rnd() < 0.3 else "",
            "disableDeviceMaxLoginAttempts": False,
            "displayname": self.untidy(f"{first} {last}", 0.2, 0.1),
            "email": email,
            "employeeIdentifier": self.untidy(f"E{n:06d}", 0.1, 0.3),
            "employeeType": self.untidy(choice(_EMPLOYEE_TYPES)),
            "enable_managed_uid": False,
            "enable_user_portal_multifactor": mfa_configured,
            "external_dn": "",
            "external_source_type": "",
            "externally_managed": False,
            "firstname": first if rnd() > 0.02 else "",
            "jobTitle": self.untidy(choice(_TITLES)),
            "lastname": last if rnd() > 0.02 else "",
            "ldap_binding_user": False,
            "location": self.untidy(choice(_LOCATIONS)),
            "managedAppleId": "",
            "manager": manager,
            "mfa": mfa,
            "mfaEnrollment": {
                "overallStatus": "ENROLLED" if mfa_configured else choice(_MFA_STATUSES),
                "totpStatus": "ENROLLED" if mfa_configured else "NOT_ENROLLED",
                "webAuthnStatus": "NOT_ENROLLED",
                "pushStatus": "NOT_ENROLLED",
            },
            "middlename": self.untidy("", 0.5, 0.4) if rnd() < 0.9 else "Q.",
            "organization": self.org_id,
            "password_expired": False,
            "password_never_expires": rnd() < 0.05,
            "passwordless_sudo": False,
            "phoneNumbers": [],
            "public_key": "",
            "relationships": [],
            "restrictedFields": [],
            "samba_service_user": False,
            "ssh_keys": [],
            "state": state,
            "sudo": False,
            "suspended": suspended,
            "totp_enabled": mfa_configured,
            "unix_guid": 5000 + n,
            "unix_uid": 5000 + n,
            "username": username,
        }
        if rnd() < 0.04:  # older records carry no `state` at all
            del record["state"]
        if rnd() < 0.05:
            record["admin"] = None
        return record

    # ---- administrators ------------------------------------------------------------------------------

    def admins(self, users: dict[str, dict[str, Any]], roles: dict[str, str]) -> dict[str, dict[str, Any]]:
        rng = self.rng
        spec = self.spec
        role_items = list(roles.items())
        weights = list(_ROLE_WEIGHTS) + [1] * (len(role_items) - len(_ROLE_WEIGHTS))
        overlap = min(int(round(spec.admins * spec.admin_user_overlap)), len(users))
        linked = rng.sample(list(users.values()), overlap)
        emails: set[str] = set()
        admins: dict[str, dict[str, Any]] = {}
        for n, when in enumerate(self.times(spec.admins)):
            if n < overlap:
                user = linked[n]
                email = _vary_case(rng, user["email"])
                first, last = user["firstname"] or rng.choice(_FIRST), user["lastname"] or rng.choice(_LAST)
            else:
                first, last = rng.choice(_FIRST), rng.choice(_LAST)
                email = f"{ascii_slug(first) or 'admin'}.{ascii_slug(last) or 'x'}.admin{n}@{self.domain}"
            if email.casefold() in emails:
                email = f"admin{n}.{email}"
            emails.add(email.casefold())
            role_id, role_name = rng.choices(role_items, weights)[0]
            if rng.random() < 0.15:  # this record spells "With" the other way from the org's role list
                role_name = _other_with(role_name)
            aid = self.new_id(when)
            admins[aid] = {
                "_id": aid,
                "email": email,
                "firstname": first,
                "lastname": last,
                "roleName": role_name,
                "roleNames": [role_name],
                "role": role_id,
                "suspended": rng.random() < 0.05,
                "enableMultiFactor": rng.random() < 0.7,
                "totpEnrolled": rng.random() < 0.6,
                "organization": "" if rng.random() < spec.blank_admin_org_share else self.org_id,
                "created": iso_time(when),
            }
        return admins

    # ---- groups --------------------------------------------------------------------------------------

    def groups(self) -> dict[str, dict[str, Any]]:
        rng = self.rng
        groups: dict[str, dict[str, Any]] = {}
        names: set[str] = set()
        for n, when in enumerate(self.times(self.spec.groups)):
            name = f"{rng.choice(_DEPARTMENTS)} {rng.choice(_GROUP_SUFFIXES)}"
            if name.casefold() in names:
                name = f"{name} {n}"
            names.add(name.casefold())
            r_attr = rng.random()
            if r_attr < 0.3:
                attributes: dict[str, Any] | None = None
            elif r_attr < 0.6:
                attributes = {}
            elif r_attr < 0.8:
                attributes = {"sudo": {"enabled": rng.random() < 0.5, "withoutPassword": False}}
            else:
                attributes = {"ldapGroups": [{"name": ascii_slug(name) or f"group{n}"}],
                              "posixGroups": [{"id": 7000 + n, "name": ascii_slug(name) or f"group{n}"}]}
            gid = self.new_id(when)
            groups[gid] = {
                "attributes": attributes,
                "description": self.untidy(f"{name} members", 0.3, 0.3),
                "email": self.untidy(f"{ascii_slug(name) or 'group'}{n}@{self.domain}", 0.5, 0.2),
                "id": gid,
                "membershipMethod": rng.choice(("STATIC", "STATIC", "STATIC", "NOTSET", "DYNAMIC_AUTOMATED",
                                                "DYNAMIC_REVIEW_REQUIRED")),
                "name": name,
                "type": "user_group",
            }
        return groups

    # ---- applications --------------------------------------------------------------------------------

    def apps(self) -> dict[str, dict[str, Any]]:
        rng = self.rng
        apps: dict[str, dict[str, Any]] = {}
        for when in self.times(self.spec.apps):
            name, display = rng.choice(_APP_CATALOG)
            label = display if rng.random() < 0.6 else f"{display} ({rng.choice(_DEPARTMENTS)})"
            aid = self.new_id(when)
            apps[aid] = make_app(aid, self.org_id, name, display, label, when,
                                 active=rng.random() < 0.9, jit=rng.random() < 0.3,
                                 description=self.untidy(f"{display} for {label}", 0.4, 0.2),
                                 color=rng.choice(_LOGO_COLORS) if rng.random() < 0.5 else None)
        return apps


class _Omitted(enum.Enum):
    """The marker of an app whose v2 object lacks the `provision` key."""

    OMITTED = "omitted"


_OMITTED = _Omitted.OMITTED


def app_provision(aid: str) -> dict[str, Any] | None | Literal[_Omitted.OMITTED]:
    """An app's Identity Management (SCIM) setting as the v2 application object carries it, chosen by the app's
    id (no draw from the generator's rng, so every other field of a tenant stays what it was): a third of the
    apps provision by SCIM (`{"type": "scim", "beta": false, "groups_supported": bool}`, the shape of the
    documented template object), a third say `"provision": null`, a third lack the key (`_OMITTED`)."""
    bucket = int(hashlib.sha1(aid.encode()).hexdigest(), 16) % 6
    if bucket < 2:
        return {"type": "scim", "beta": False, "groups_supported": bucket == 0}
    return None if bucket < 4 else _OMITTED


def make_app(aid: str, org_id: str, name: str, display: str, label: str, when: float, *, active: bool = True,
             jit: bool = False, description: str | None = "", color: str | None = None,
             sso_type: str = "saml") -> dict[str, Any]:
    """A v1 `application` record with the fields the spec requires (`config`, `name`, `ssoUrl`)."""
    logo: dict[str, Any] = {"url": f"https://cdn.jumpcloud.test/logos/{name}.png"}
    if color:
        logo["color"] = color
    return {
        "_id": aid,
        "id": aid,
        "active": active,
        "beta": False,
        "config": {
            "acsUrl": {"label": "ACS URL", "position": 1, "readOnly": False, "required": True, "type": "text",
                       "value": f"https://{name}.example.test/saml/acs", "visible": True},
            "idpEntityId": {"label": "IdP Entity ID", "position": 2, "readOnly": False, "required": True,
                            "type": "text", "value": f"jumpcloud-{name}", "visible": True},
            "spEntityId": {"label": "SP Entity ID", "position": 3, "readOnly": False, "required": True,
                           "type": "text", "value": f"https://{name}.example.test", "visible": True},
        },
        "created": iso_time(when),
        "description": description,
        "displayLabel": label,
        "displayName": display,
        "learnMore": f"https://support.jumpcloud.test/apps/{name}",
        "logo": logo,
        "name": name,
        "organization": org_id,
        "sso": {"beta": False, "hidden": False, "jit": jit, "type": sso_type},
        "ssoUrl": f"https://sso.jumpcloud.test/saml2/{name}-{aid[-6:]}",
    }


def _other_with(role_name: str) -> str:
    """"Administrator With Billing" <-> "Administrator with Billing"; names without "with" are unchanged."""
    if " With " in role_name:
        return role_name.replace(" With ", " with ")
    return role_name.replace(" with ", " With ")


def _vary_case(rng: random.Random, email: str) -> str:
    """The same address in another case, as when an admin account was typed separately (Alice@X.com)."""
    r = rng.random()
    if r < 0.3:
        return email
    local, _, dom = email.partition("@")
    if r < 0.6:
        return f"{local[:1].upper()}{local[1:]}@{dom}"
    if r < 0.8:
        return f"{local}@{dom.upper()}"
    return email.upper()
