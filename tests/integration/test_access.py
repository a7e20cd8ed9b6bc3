"""Access insight (access/queries.py and export.py, cli/access.py and access/render.py) on a hand-built
tenant whose answers are known (tests/support/access_tenant.py describes it).

Every test runs on SQLite and on a real PostgreSQL server (the ``engine`` fixture).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from access import export as ex
from access import queries as q
from access import report as rp
from access.render import csv_cell
from connector.records import GrantRecord, ResourceRecord
from models import resolver
from models.store import GrantWriter, ResourceWriter
from models.tables import Connector, Resource
from tests.support.access_tenant import ADMINS, APPS, FIRST_SEEN, GROUPS, NOW, USERS, build_tenant, user_record


@pytest.fixture
def tenant(engine):
    build_tenant(engine)
    return engine


def _entries(result) -> list[tuple]:
    return [(e["type"], e["id"], e["name"], e["entitlement"], e["via"] and e["via"]["id"],
             e["account"]["type"], e["account"]["id"]) for e in result["access"]]


ALICE = [
    ("group", "g-eng", "Engineering", "member", None, "user", "u-alice"),
    ("group", "g-ops", "Operations", "member", None, "user", "u-alice"),
    ("app", "app-github", "GitHub", "access", None, "user", "u-alice"),
    ("app", "app-github", "GitHub", "access", "g-eng", "user", "u-alice"),
    ("app", "app-github", "GitHub", "access", "g-ops", "user", "u-alice"),
    ("role", "administrator", "Administrator", "assigned", None, "admin", "a-alice"),
]


# --- access ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("query", ["alice", "ALICE", "u-alice", "a-alice", "alice@example.com",
                                   " Alice@EXAMPLE.com "])
def test_access_of_a_person_with_user_and_admin_accounts(tenant, query):
    result = q.access(tenant, "acme", query)
    assert result["person"]["user"] == {"type": "user", "id": "u-alice", "name": "Alice Anders",
                                        "email": "Alice@Example.com", "status": "active", "username": "alice"}
    assert [a["id"] for a in result["person"]["admins"]] == ["a-alice"]
    assert _entries(result) == ALICE
    via = [e["via"] for e in result["access"] if e["via"]]
    assert via == [{"type": "group", "id": "g-eng", "name": "Engineering"},
                   {"type": "group", "id": "g-ops", "name": "Operations"}]


def test_access_of_other_people(tenant):
    carol = q.access(tenant, "acme", "carol@example.com")
    assert carol["person"]["admins"] == []
    assert _entries(carol) == [("group", "g-eng", "Engineering", "member", None, "user", "u-carol"),
                               ("app", "app-github", "GitHub", "access", "g-eng", "user", "u-carol")]
    assert _entries(q.access(tenant, "acme", "bob")) == [("app", "app-slack", "Slack", "access", None, "user", "u-bob")]
    assert _entries(q.access(tenant, "acme", "DAVE")) == [
        ("role", "help-desk", "Help Desk", "assigned", None, "admin", "a-dave")]
    assert _entries(q.access(tenant, "acme", "sam.one@example.com")) == []


def test_access_of_an_admin_without_a_user(tenant):
    for query in ("olga@example.com", "OLGA@example.com", "a-olga"):
        result = q.access(tenant, "acme", query)
        assert result["person"]["user"] is None
        assert [(a["id"], a["email"], a["username"]) for a in result["person"]["admins"]] == [
            ("a-olga", "olga@example.com", None)]
        assert _entries(result) == [("role", "read-only", "Read Only", "assigned", None, "admin", "a-olga")]


def test_access_ambiguous_and_unknown(tenant):
    with pytest.raises(resolver.Ambiguous) as caught:
        q.access(tenant, "acme", "Sam")
    assert [(c["id"], c["username"]) for c in caught.value.candidates] == [("u-sam1", "sam"), ("u-sam2", "SAM")]
    with pytest.raises(resolver.NotFound, match="no user or admin"):
        q.access(tenant, "acme", "nobody@example.com")
    with pytest.raises(resolver.NotFound, match="only accounts deleted"):
        q.access(tenant, "acme", "erin")
    from models.queries import UnknownConnector

    with pytest.raises(UnknownConnector):
        q.access(tenant, "nope", "alice")


def test_access_by_username_uses_the_current_username_case_folded(tenant):
    """The username key follows a rename, and folds as Python does (ß matches ss, on SQLite too)."""
    later = datetime(2026, 3, 1, tzinfo=timezone.utc)
    cid = Session(tenant).execute(Connector.__table__.select().where(Connector.name == "acme")).one().id
    ResourceWriter(tenant, cid, "user", later).write(
        [user_record("u-bob", "Bob Brown", "bob@example.com", "suspended", "Bøb.Straße")])
    for query in ("Bøb.Straße", "BØB.STRASSE", " bøb.strasse "):
        assert q.access(tenant, "acme", query)["person"]["user"]["id"] == "u-bob"
    with pytest.raises(resolver.NotFound, match="no user or admin"):
        q.access(tenant, "acme", "bob")


# --- who-has -----------------------------------------------------------------------------------------------------

def _holders(result) -> list[tuple]:
    return [(h["principal"]["type"], h["principal"]["id"], h["entitlement"], h["via"] and h["via"]["id"],
             h["linked_user"] and h["linked_user"]["id"]) for h in result["holders"]]


def test_who_has_an_app_bound_to_groups(tenant):
    for target in ("app:GitHub", "app:github", "APP: github ", "app:app-github"):
        result = q.who_has(tenant, "acme", target)
        assert result["resource"] == {"type": "app", "id": "app-github", "name": "GitHub"}
        assert _holders(result) == [
            ("user", "u-alice", "access", None, None),
            ("user", "u-alice", "access", "g-eng", None),
            ("user", "u-alice", "access", "g-ops", None),
            ("user", "u-carol", "access", "g-eng", None),
            ("group", "g-eng", "access", None, None),
            ("group", "g-ops", "access", None, None),
        ]
    carol = q.who_has(tenant, "acme", "app:GitHub")["holders"][3]
    assert carol == {"principal": {"type": "user", "id": "u-carol", "name": "Carol Chen", "email": "carol@example.com",
                                   "status": "staged", "deleted": False},
                     "entitlement": "access", "via": {"type": "group", "id": "g-eng", "name": "Engineering"},
                     "linked_user": None}


def test_who_has_a_group_a_role_and_deleted_holders(tenant):
    assert _holders(q.who_has(tenant, "acme", "group:engineering")) == [
        ("user", "u-alice", "member", None, None), ("user", "u-carol", "member", None, None)]
    help_desk = q.who_has(tenant, "acme", "role:help desk")
    assert _holders(help_desk) == [("admin", "a-dave", "assigned", None, "u-dave")]
    assert help_desk["holders"][0]["linked_user"] == {"type": "user", "id": "u-dave", "name": "Dave Diaz",
                                                      "email": "dave@example.com", "status": "active",
                                                      "username": "dave"}
    assert _holders(q.who_has(tenant, "acme", "role:read-only")) == [("admin", "a-olga", "assigned", None, None)]
    assert q.who_has(tenant, "acme", "role:Billing Only")["holders"] == []
    slack = q.who_has(tenant, "acme", "app:slack")["holders"]  # Alice's grant is deleted: not listed
    assert [(h["principal"]["id"], h["principal"]["deleted"], h["principal"]["status"]) for h in slack] == [
        ("u-bob", False, "suspended"), ("u-erin", True, "active")]
    contractors = q.who_has(tenant, "acme", "group:Contractors")["holders"]
    assert [(h["principal"]["id"], h["principal"]["name"], h["principal"]["deleted"]) for h in contractors] == [
        ("u-missing", None, True)]


def test_who_has_ambiguous_unknown_and_malformed(tenant):
    with pytest.raises(resolver.Ambiguous) as caught:
        q.who_has(tenant, "acme", "app:DOCS")
    assert [c["id"] for c in caught.value.candidates] == ["app-docs1", "app-docs2"]
    assert q.who_has(tenant, "acme", "app:app-docs2")["holders"] == []
    with pytest.raises(resolver.NotFound):
        q.who_has(tenant, "acme", "app:Nope")
    with pytest.raises(resolver.NotFound):
        q.who_has(tenant, "acme", "group:GitHub")  # an app, not a group
    for bad in ("GitHub", "user:alice", "app:", "app: "):
        with pytest.raises(ValueError):
            q.who_has(tenant, "acme", bad)


# --- report ------------------------------------------------------------------------------------------------------

def _findings(result) -> list[tuple]:
    def ref(value):
        return value and (value["type"], value["id"])

    return [(f["kind"], ref(f["subject"]), ref(f["related"]), ref(f["via"])) for f in result["findings"]]


EXPECTED_FINDINGS = [
    ("admin_without_user", ("admin", "a-olga"), None, None),
    ("inactive_user_app_access", ("user", "u-bob"), ("app", "app-slack"), None),
    ("inactive_user_app_access", ("user", "u-carol"), ("app", "app-github"), ("group", "g-eng")),
    ("admin_role_without_mfa", ("user", "u-dave"), ("role", "help-desk"), ("admin", "a-dave")),
    ("admin_role_without_mfa", ("user", "u-frank"), ("role", "manager"), ("admin", "a-frank")),
    ("empty_group_bound_to_app", ("group", "g-empty"), ("app", "app-wiki"), None),
    ("empty_group_bound_to_app", ("group", "g-ghost"), ("app", "app-wiki"), None),
    ("deleted_principal_granted", ("user", "u-missing"), ("group", "g-contract"), None),
    ("deleted_principal_granted", ("user", "u-erin"), ("app", "app-slack"), None),
    ("deleted_principal_granted", ("user", "u-erin"), ("app", "app-wiki"), ("group", "g-ghost")),
    ("deleted_principal_granted", ("user", "u-erin"), ("group", "g-ghost"), None),
    ("provisioned_app_without_users", ("app", "app-wiki"), None, None),
    ("app_access_not_provisioned", ("app", "app-slack"), None, None),
]


def test_report_findings(tenant):
    result = rp.report(tenant, "acme")
    assert _findings(result) == EXPECTED_FINDINGS
    assert result["summary"] == {"admin_without_user": 1, "inactive_user_app_access": 2, "admin_role_without_mfa": 2,
                                 "empty_group_bound_to_app": 2, "deleted_principal_granted": 4,
                                 "provisioned_app_without_users": 1, "app_access_not_provisioned": 1}
    details = {(f["kind"], f["subject"]["id"], f["related"] and f["related"]["id"]): f["detail"]
               for f in result["findings"]}
    assert details[("admin_without_user", "a-olga", None)] == \
        "no live user account with the admin's email (olga@example.com)"
    assert details[("inactive_user_app_access", "u-carol", "app-github")] == \
        "staged user holds access through group Engineering"
    assert details[("inactive_user_app_access", "u-bob", "app-slack")] == "suspended user holds access directly"
    assert details[("admin_role_without_mfa", "u-frank", "manager")].startswith("user MFA unknown")
    assert details[("admin_role_without_mfa", "u-dave", "help-desk")].startswith("user MFA not configured")
    assert details[("deleted_principal_granted", "u-missing", "g-contract")].startswith(
        "user not in the database")
    assert details[("deleted_principal_granted", "u-erin", "app-slack")].startswith(
        "user deleted in JumpCloud at 2026-02-01T00:00:00+00:00")
    assert details[("provisioned_app_without_users", "app-wiki", None)] == \
        "JumpCloud provisions users into the app (scim) but no live user has access"
    assert details[("app_access_not_provisioned", "app-slack", None)].startswith(
        "1 live user has access;")  # Bob (suspended, still an account); Alice's grant and Erin are deleted
    erin = next(f for f in result["findings"] if f["subject"]["id"] == "u-erin")
    assert erin["subject"] == {"type": "user", "id": "u-erin", "name": "Erin Ek"}


def test_report_of_a_clean_tenant_is_empty(engine):
    with Session(engine) as session:
        row = Connector(name="clean", base_url="https://console.jumpcloud.com")
        session.add(row)
        session.commit()
        cid = row.id
    ResourceWriter(engine, cid, "user", NOW).write([USERS[0]])
    ResourceWriter(engine, cid, "group", NOW).write([ResourceRecord("group", "g-eng", "Engineering")])
    GrantWriter(engine, cid, "group", "group", NOW).write_scopes(
        {"g-eng": [GrantRecord("group", "g-eng", "member", "user", "u-alice")]})
    result = rp.report(engine, "clean")
    assert result["findings"] == [] and set(result["summary"].values()) == {0}


# --- export ------------------------------------------------------------------------------------------------------

def _expected_grants() -> set[tuple]:
    """(principal type, principal id, resource type, resource id, entitlement, via) of every live grant."""
    out = {("user", uid, "group", gid, "member", None) for gid, (_, members) in GROUPS.items() for uid in members}
    for aid, (_, users, groups) in APPS.items():
        out |= {("user", uid, "app", aid, "access", None) for uid in users if (aid, uid) != ("app-slack", "u-alice")}
        out |= {("group", gid, "app", aid, "access", None) for gid in groups}
        out |= {("user", uid, "app", aid, "access", gid) for gid in groups for uid in GROUPS[gid][1]}
    out |= {("admin", aid, "role", role, "assigned", None) for aid, *_, role in ADMINS}
    return out


def test_export(tenant):
    rows = ex.export(tenant, "acme")
    assert {(r["principal_type"], r["principal_id"], r["resource_type"], r["resource_id"], r["entitlement"],
             r["via_id"]) for r in rows} == _expected_grants()
    assert len(rows) == len(_expected_grants()) == 20
    assert all(list(r) == list(ex.EXPORT_COLUMNS) for r in rows)
    assert [(r["resource_type"], r["resource_id"]) for r in rows] == sorted(
        (r["resource_type"], r["resource_id"]) for r in rows)
    carol = next(r for r in rows if r["principal_id"] == "u-carol" and r["resource_id"] == "app-github")
    assert carol == {"principal_type": "user", "principal_id": "u-carol", "principal_name": "Carol Chen",
                     "principal_email": "carol@example.com", "principal_status": "staged", "resource_type": "app",
                     "resource_id": "app-github", "resource_name": "GitHub", "entitlement": "access",
                     "via_id": "g-eng", "via_name": "Engineering", "first_seen_at": FIRST_SEEN,
                     "principal_deleted": False, "resource_provisioning": "scim"}
    assert {(r["resource_id"], r["resource_provisioning"]) for r in rows if r["resource_type"] == "app"} == {
        ("app-github", "scim"), ("app-slack", "none"), ("app-wiki", "scim")}
    assert all(r["resource_provisioning"] is None for r in rows if r["resource_type"] != "app")
    gone = {(r["principal_id"], r["resource_id"], r["via_id"]) for r in rows if r["principal_deleted"]}
    assert gone == {("u-erin", "app-slack", None), ("u-erin", "app-wiki", "g-ghost"), ("u-erin", "g-ghost", None),
                    ("u-missing", "g-contract", None)}
    from models.queries import UnknownConnector

    with pytest.raises(UnknownConnector):
        ex.iter_export(tenant, "nope")  # at once, before any row is asked for


def test_the_export_is_in_code_point_order_on_every_database(tenant, monkeypatch):
    """The export streams the grants in their key's order from the database (access.export): the same order as
    Python's, code points, whatever the database's collation (PostgreSQL's would put "b" before "C", and "é"
    beside "e"), across the cursor's batches."""
    monkeypatch.setattr(ex, "GRANTS_BATCH", 3)
    with Session(tenant) as session:
        cid = session.exec(select(Connector.id).where(Connector.name == "acme")).one()
    if tenant.dialect.name == "postgresql":  # a collation that is not code points, as a production database's may be
        with tenant.begin() as connection:
            for column in ex.GRANT_KEY:
                connection.exec_driver_sql(f'ALTER TABLE grants ALTER COLUMN {column} TYPE varchar COLLATE "und-x-icu"')
    ids = ["Zed", "alpha", "beta", "Beta", "éclair", "eclair", "_under", "g-10", "g-9", "Ω"]
    GrantWriter(tenant, cid, "group", "group", NOW).write_scopes(
        {gid: [GrantRecord("group", gid, "member", "user", uid) for uid in ("u-b", "U-a", "u-a")] for gid in ids})
    rows = list(ex.iter_export(tenant, "acme"))
    keys = [(r[5], r[6], r[8], r[0], r[1], r[9] or "") for r in rows]  # EXPORT_COLUMNS' grant key
    assert keys == sorted(keys) and len(keys) == 20 + 3 * len(ids)
    assert [k[1] for k in keys if k[0] == "group" and k[1] in ids][::3] == sorted(ids)


# --- the commands ------------------------------------------------------------------------------------------------

def test_cli_access(run, tenant, terminal):
    result = run("access", "acme", "ALICE@example.com", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == q.access(tenant, "acme", "ALICE@example.com")
    assert _entries(json.loads(result.stdout)) == ALICE

    piped = run("access", "acme", "alice")
    assert piped.exit_code == 0
    lines = piped.stdout.splitlines()
    assert lines[0] == "type\tname\tid\tentitlement\tvia\taccount"
    assert "group\tEngineering\tg-eng\tmember\tdirect\tuser u-alice" in lines
    assert "user u-alice: Alice Anders" in piped.stderr  # who the person is: not a row
    terminal(250)
    table = run("access", "acme", "alice")
    assert table.exit_code == 0
    for text in ("user u-alice: Alice Anders", "admin a-alice", "Engineering (g-eng)", "Administrator", "direct"):
        assert text in table.stdout

    ambiguous = run("access", "acme", "sam", "--json")
    assert ambiguous.exit_code == 2 and ambiguous.stdout == ""
    assert "'sam' matches 2 users" in ambiguous.stderr
    assert "u-sam1: Sam One" in ambiguous.stderr and "u-sam2: Sam Two" in ambiguous.stderr
    unknown = run("access", "acme", "nobody")
    assert unknown.exit_code == 2 and "no user or admin with id, email or username 'nobody'" in unknown.stderr
    no_connector = run("access", "nope", "alice")
    assert no_connector.exit_code == 2 and "has never been synced" in no_connector.stderr


def test_cli_who_has(run, tenant):
    result = run("who-has", "acme", "role:Administrator", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == q.who_has(tenant, "acme", "role:Administrator")
    assert _holders(data) == [("admin", "a-alice", "assigned", None, "u-alice")]
    table = run("who-has", "acme", "app:wiki")
    assert table.exit_code == 0 and "Ghost Team (g-ghost)" in table.stdout and "deleted" in table.stdout
    assert run("who-has", "acme", "app:docs").exit_code == 2
    malformed = run("who-has", "acme", "slack")
    assert malformed.exit_code == 2 and "is not app:NAME" in malformed.stderr


def test_cli_report(run, tenant, terminal):
    result = run("report", "acme", "--format", "json")
    assert result.exit_code == 0, result.output
    assert _findings(json.loads(result.stdout)) == EXPECTED_FINDINGS

    as_csv = run("report", "acme", "--format", "csv")
    assert as_csv.exit_code == 0
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert tuple(rows[0]) == rp.REPORT_COLUMNS
    assert [(r[0], r[1], r[2], r[4], r[5], r[7], r[8]) for r in rows[1:]] == [
        (kind, *subject, *(related or ("", "")), *(via or ("", "")))
        for kind, subject, related, via in EXPECTED_FINDINGS]
    assert rows[2][3] == "Bob Brown" and rows[2][6] == "Slack"

    piped = run("report", "acme")
    assert piped.stdout.startswith("kind\tsubject\trelated\tvia\tdetail\n")
    assert "deleted_principal_granted    4" in piped.stderr
    terminal(250)
    table = run("report", "acme")
    assert table.exit_code == 0
    assert "deleted_principal_granted    4" in table.stdout and "Olga Orr (a-olga)" in table.stdout
    assert run("report", "acme", "--format", "xml").exit_code == 2
    assert run("report", "nope").exit_code == 2


def test_cli_export(run, tenant, tmp_path):
    result = run("export", "acme")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == ex.EXPORT_COLUMNS
    expected = [{k: str(csv_cell(v)) for k, v in row.items()} for row in ex.export(tenant, "acme")]
    assert rows == expected and len(rows) == 20
    assert {r["principal_deleted"] for r in rows} == {"true", "false"}

    target = tmp_path / "review.json"
    written = run("export", "acme", "--format", "json", "--output", str(target))
    assert written.exit_code == 0 and written.stdout == ""
    assert "wrote 20 grants to" in written.stderr
    assert json.loads(target.read_text()) == ex.export(tenant, "acme")

    target_csv = tmp_path / "review.csv"
    assert run("export", "acme", "-o", str(target_csv)).exit_code == 0
    assert target_csv.read_text(encoding="utf-8").splitlines()[0] == ",".join(ex.EXPORT_COLUMNS)

    missing = tmp_path / "absent.csv"
    assert run("export", "nope", "-o", str(missing)).exit_code == 2 and not missing.exists()
    assert run("export", "acme", "-o", str(tmp_path / "no" / "dir.csv")).exit_code == 2


def test_empty_export_is_valid(engine, tmp_path, monkeypatch):
    with Session(engine) as session:
        session.add(Connector(name="empty", base_url="https://console.jumpcloud.com"))
        session.commit()
    assert ex.export(engine, "empty") == []
    from access.render import ExportFormat, export_lines, write_export

    for fmt, expected in ((ExportFormat.json, "[]\n"), (ExportFormat.csv, ",".join(ex.EXPORT_COLUMNS) + "\r\n")):
        out = io.StringIO()
        assert write_export(out, export_lines(engine, "empty", fmt), fmt) == 0
        assert out.getvalue() == expected


HOSTILE_NAMES = {"g-eng": '=HYPERLINK("http://x", "a, b")', "g-ops": "-Ops\nline two", "app-github": "",
                 "app-slack": "\tSlack \"quoted\"", "administrator": "@Admin\r", "u-alice": "Ålice, Ünïcode",
                 "u-bob": "+1 Bob", "u-carol": "'single"}


def test_export_output_is_what_csv_and_json_write_row_by_row(tenant):
    """The export renders each principal, resource and group once and assembles lines from the parts; the
    bytes must be those of ``csv.writer`` (through ``csv_cell``) and ``json`` writing every row in full."""
    from access.render import ExportFormat, export_lines, write_export

    R = Resource.__table__
    with Session(tenant) as session:
        for rid, name in HOSTILE_NAMES.items():
            session.execute(update(R).where(R.c.external_id == rid).values(name=name))
        session.execute(update(R).where(R.c.external_id == "u-bob").values(email="=cmd|' /C calc'!A0", status=""))
        session.commit()
    rows = list(ex.iter_export(tenant, "acme"))
    assert {r[2] for r in rows} >= {HOSTILE_NAMES["u-alice"], HOSTILE_NAMES["u-bob"]}

    expected_csv = io.StringIO()
    writer = csv.writer(expected_csv)
    writer.writerow(ex.EXPORT_COLUMNS)
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    encode = json.JSONEncoder(ensure_ascii=False).encode
    expected_json = "[\n" + ",\n".join(encode(dict(zip(ex.EXPORT_COLUMNS, row, strict=True))) for row in rows) + "\n]\n"

    for fmt, expected in ((ExportFormat.csv, expected_csv.getvalue()), (ExportFormat.json, expected_json)):
        for batch in (1, 3, 10_000):
            out = io.StringIO()
            assert write_export(out, export_lines(tenant, "acme", fmt), fmt, batch=batch) == len(rows) == 20
            assert out.getvalue() == expected, (fmt, batch)
    assert "'=HYPERLINK" in expected_csv.getvalue() and "'=cmd" in expected_csv.getvalue()


def test_csv_cells_cannot_be_spreadsheet_formulas():
    assert [csv_cell(v) for v in ("=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tx", "Alice", None, True,
                                  False, "a=b")] == [
        "'=HYPERLINK(\"http://x\")", "'+1", "'-2", "'@SUM(A1)", "'\tx", "Alice", "", "true", "false", "a=b"]


def test_long_tables_show_the_first_rows_and_say_how_many_more(run, tenant, monkeypatch, terminal):
    """Tables are capped (rich draws about a thousand rows a second); the report keeps every kind in view. A pipe
    gets every row."""
    from cli import access as cli_access
    from cli import output

    terminal(250)
    monkeypatch.setattr(output, "TABLE_ROWS", 2)
    monkeypatch.setattr(cli_access, "REPORT_ROWS_PER_KIND", 1)
    alice = run("access", "acme", "alice")
    assert alice.exit_code == 0
    assert "Engineering" in alice.stdout and "Administrator" not in alice.stdout
    assert "… and 4 more groups, apps and roles (--json lists them all)" in alice.stdout
    github = run("who-has", "acme", "app:GitHub")
    assert "… and 4 more holders (--json lists them all)" in github.stdout
    monkeypatch.setattr(output, "TABLE_ROWS", 5)  # one left over: said in the singular
    assert "… and 1 more holder (--json lists them all)" in run("who-has", "acme", "app:GitHub").stdout
    assert "… and 1 more group, app or role (--json" in run("access", "acme", "alice").stdout

    report = run("report", "acme")
    assert report.exit_code == 0
    for kind, _, _, _ in EXPECTED_FINDINGS:
        assert kind in report.stdout.split("\n", 5)[-1]  # in the table, below the summary
    assert "u-bob" in report.stdout and "u-carol" not in report.stdout  # the first of its kind only
    assert "… and 3 more deleted_principal_granted findings (-o csv or -o json lists them all)" in report.stdout
    assert "more admin_without_user" not in report.stdout  # one of that kind: all shown

    monkeypatch.setattr(output, "TABLE_ROWS", 200)
    assert "more" not in run("who-has", "acme", "app:GitHub").stdout
    monkeypatch.setattr(output, "TABLE_ROWS", 2)
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    piped = run("access", "acme", "alice")
    assert len(piped.stdout.splitlines()) == 1 + 6 and "more" not in piped.output


def test_cli_tables_show_names_literally(run, tenant):
    R = Resource.__table__
    with Session(tenant) as session:
        session.execute(update(R).where(R.c.type == "group", R.c.external_id == "g-ops")
                        .values(name="[red]Ops\x1b[31m"))
        session.commit()
    for args in (("access", "acme", "alice"), ("who-has", "acme", "app:GitHub"), ("report", "acme")):
        result = run(*args)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.stdout
    assert "[red]Ops\\x1b[31m (g-ops)" in run("access", "acme", "alice").stdout
