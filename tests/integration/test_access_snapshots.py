"""Stored renderings of the report and export (access/snapshots.py, access/snapshot_store.py), on the
hand-built tenant of test_access, on SQLite and on a real PostgreSQL server.

The point of a stored rendering is that it is never served once the data changed: each test changes the data
the way the product does (a sync run, provisioning's write-through) and checks what the commands write.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from access import snapshot_store as snapshots
from access import snapshots as stored
from access.render import ExportFormat, ReportFormat, report_head
from access.report import FINDING_KINDS, report
from connector.records import GrantRecord, ResourceRecord
from models import queries
from models.dataversion import RunEnded
from models.store import GrantWriter, ResourceWriter
from models.tables import AccessSnapshot, AccessSnapshotBlock, SyncRun, utcnow
from provisioning.writethrough import WriteThrough
from tests.support.access_tenant import build_tenant
from tests.support.renderings import live, served

ARTIFACTS = [stored.report_artifact(f) for f in (ReportFormat.json, ReportFormat.csv)] + [
    stored.export_artifact(f) for f in ExportFormat]


@pytest.fixture
def tenant(engine):
    return engine, build_tenant(engine)


def add_run(engine, cid: int, status: str) -> int:
    with Session(engine) as session:
        row = SyncRun(connector_id=cid, status=status, trigger="manual", started_at=utcnow())
        session.add(row)
        session.commit()
        return row.id


def test_a_rendering_is_the_commands_output_byte_for_byte(tenant):
    engine, _ = tenant
    assert all(served(engine, a) is None for a in ARTIFACTS)  # nothing rendered yet
    done = stored.refresh(engine, "acme")
    assert done.outcome == "rendered" and done.compressed_bytes > 0
    for artifact in ARTIFACTS:
        assert served(engine, artifact) == live(engine, artifact), artifact
    with engine.connect() as connection:
        header = snapshots.stored(connection, tenant[1])
    assert header.export_rows == 20 and set(header.artifacts) == {*ARTIFACTS, stored.REPORT_HEAD}
    full = report(engine, "acme")
    assert json.loads(served(engine, stored.REPORT_HEAD)) == report_head(full)  # the table's data
    assert stored.refresh(engine, "acme").outcome == "current"  # nothing changed: nothing rendered
    assert stored.refresh(engine, "nope").outcome == "never synced"


def test_a_part_that_outlived_its_run_writes_nothing_and_other_writes_move_the_version(tenant):
    """The rule of models.dataversion: data changes only in an active run, or with the counter moving."""
    engine, cid = tenant
    run_id = add_run(engine, cid, "running")
    writer = ResourceWriter(engine, cid, "group", utcnow(), run_id)
    writer.write([ResourceRecord("group", "g-new", "New Team")])  # the run is active: written
    with Session(engine) as session:  # the reaper gives up on the run
        session.execute(update(SyncRun).where(SyncRun.id == run_id).values(status="failed", finished_at=utcnow()))
        session.commit()
    stored.refresh(engine, "acme")
    before = served(engine, "export.csv")
    with pytest.raises(RunEnded, match=f"sync run {run_id} is no longer active"):
        writer.write([ResourceRecord("group", "g-late", "Late Team")])
    with pytest.raises(RunEnded):
        writer.delete_unseen()  # a late part's deletions are refused too
    names = {r.id for r in queries.resources(engine, "acme", "group", include_deleted=False)}
    assert "g-new" in names and "g-late" not in names and "g-eng" in names
    assert served(engine, "export.csv") == before  # nothing changed, and the rendering says so

    GrantWriter(engine, cid, "group", "group", utcnow()).write_scopes(  # a write outside any run (a tool)
        {"g-new": [GrantRecord("group", "g-new", "member", "user", "u-bob")]})
    assert served(engine, "export.csv") is None


def test_a_write_through_makes_the_rendering_stale_until_the_next_refresh(tenant):
    engine, cid = tenant
    stored.refresh(engine, "acme")
    before = served(engine, "export.csv")
    WriteThrough(engine, cid, request_id="r1").group_member("g-ops", "u-bob", present=True)
    assert served(engine, "export.csv") is None  # never the old bytes
    assert b"u-bob" in live(engine, "export.csv") and live(engine, "export.csv") != before

    assert stored.refresh(engine, "acme").outcome == "rendered"
    assert served(engine, "export.csv") == live(engine, "export.csv")
    # Every kind of write-through counts, including one that changes a resource only.
    for write in (lambda w: w.app_access("app-wiki", "user", "u-carol", present=True),
                  lambda w: w.user_deleted("u-sam1"),
                  lambda w: w.user_record({"_id": "u-zed", "username": "zed", "email": "zed@example.com",
                                           "firstname": "Zed", "lastname": "Z", "state": "ACTIVATED"})):
        stored.refresh(engine, "acme")
        assert served(engine, "report.json") is not None
        write(WriteThrough(engine, cid, request_id="r2"))
        assert served(engine, "report.json") is None


def test_nothing_is_served_or_rendered_while_a_sync_run_is_active(tenant):
    engine, cid = tenant
    stored.refresh(engine, "acme")
    run_id = add_run(engine, cid, "running")
    assert served(engine, "report.csv") is None
    assert stored.refresh(engine, "acme").outcome == "busy"
    with Session(engine) as session:
        session.execute(update(SyncRun).where(SyncRun.id == run_id).values(status="succeeded", finished_at=utcnow()))
        session.commit()
    assert served(engine, "report.csv") is None  # rendered before the run: the run may have changed anything
    assert stored.refresh(engine, "acme").outcome == "rendered"
    assert served(engine, "report.csv") == live(engine, "report.csv")
    add_run(engine, cid, "skipped")  # a skipped trigger changes nothing
    assert served(engine, "report.csv") is not None


def test_a_write_during_the_rendering_leaves_it_stale(tenant, monkeypatch):
    """The version is read before the data: a write that lands while the rendering reads is not in the stored
    version, so the rendering is never served, whatever it happened to read."""
    engine, cid = tenant
    real_render = stored.render

    def render_with_a_write_in_the_middle(engine_, connector, staged):
        rows = real_render(engine_, connector, staged)
        WriteThrough(engine, cid, request_id="r3").group_member("g-eng", "u-dave", present=True)
        return rows

    monkeypatch.setattr(stored, "render", render_with_a_write_in_the_middle)
    assert stored.refresh(engine, "acme").outcome == "rendered"
    assert served(engine, "export.json") is None
    monkeypatch.undo()
    assert stored.refresh(engine, "acme").outcome == "rendered"
    assert b"u-dave" in served(engine, "export.json")


def test_a_rendering_that_fails_midway_leaves_the_last_one_served_and_none_of_its_blocks(tenant, monkeypatch):
    """A rendering's blocks reach the database as they are made (the worker never holds them all), under an id
    no header names: one that fails after some were written removes them, and the last whole rendering is
    still the one served."""
    engine, cid = tenant
    assert stored.refresh(engine, "acme").outcome == "rendered"
    before = served(engine, "export.json")
    real_export = stored._export_artifacts
    monkeypatch.setattr(snapshots, "STAGE_BLOCKS", 1)  # each block written as it is made

    def staged_blocks(render_id: str) -> int:
        with engine.connect() as connection:
            return len(connection.execute(select(AccessSnapshotBlock.seq)
                                          .where(AccessSnapshotBlock.render_id == render_id)).all())

    def fails_after_the_export(engine_, connector, staged):
        real_export(engine_, connector, staged)
        assert staged_blocks(staged.render_id) == sum(staged.counts.values()) >= 5  # in the database already
        raise RuntimeError("disk full")

    monkeypatch.setattr(stored, "_export_artifacts", fails_after_the_export)
    with pytest.raises(RuntimeError, match="disk full"):
        stored.refresh(engine, "acme", force=True)
    assert served(engine, "export.json") == before
    with engine.connect() as connection:
        header = snapshots.stored(connection, cid)
        kept = set(connection.execute(select(AccessSnapshotBlock.render_id)
                                      .where(AccessSnapshotBlock.connector_id == cid)).scalars())
    assert kept == {header.render_id}


def test_a_rendering_made_by_other_code_is_not_served(tenant, monkeypatch):
    """After an upgrade that changed how an output is written, the previous version's renderings are not
    served, and the next refresh replaces them."""
    engine, _ = tenant
    stored.refresh(engine, "acme")
    assert served(engine, "report.csv") is not None
    monkeypatch.setattr(stored, "renderer_version", lambda: "another-version")
    assert served(engine, "report.csv") is None
    assert stored.refresh(engine, "acme").outcome == "rendered"
    assert served(engine, "report.csv") == live(engine, "report.csv")


def test_a_replaced_rendering_is_not_mixed_with_the_new_one(tenant):
    engine, cid = tenant
    stored.refresh(engine, "acme")
    with engine.connect() as connection:
        old = snapshots.current(connection, cid, stored.renderer_version())
    stored.refresh(engine, "acme", force=True)
    with engine.connect() as connection:
        assert snapshots.blocks(connection, cid, old, "export.csv") is None  # its blocks are gone
        new = snapshots.current(connection, cid, stored.renderer_version())
        assert new.render_id != old.render_id
        assert snapshots.blocks(connection, cid, new, "export.csv") is not None
        assert snapshots.blocks(connection, cid, new, "export.xml") is None
    with Session(engine) as session:
        assert session.get(AccessSnapshot, cid).render_id == new.render_id


def test_refreshes_take_turns_and_one_failure_does_not_stop_the_others(tenant, redis_url, monkeypatch):
    import redis

    engine, cid = tenant
    client = redis.Redis.from_url(redis_url)
    held = client.lock("jumpsync:access-refresh:acme", timeout=60)
    assert held.acquire(blocking=False)
    try:
        done = stored.refresh_connectors(engine, ["acme", "nope"], client)
        assert [(d.connector, d.outcome) for d in done] == [("acme", "rendering elsewhere"), ("nope", "never synced")]
        assert served(engine, "export.csv") is None
    finally:
        held.release()

    real_render = stored.render

    def render(engine_, connector, staged):
        if connector == "acme":
            raise RuntimeError("disk full")
        return real_render(engine_, connector, staged)

    monkeypatch.setattr(stored, "render", render)
    other = build_second_connector(engine)
    done = stored.refresh_connectors(engine, ["acme", other], client)
    assert [(d.connector, d.outcome) for d in done] == [("acme", "failed"), (other, "rendered")]
    assert "disk full" in done[0].error
    assert not client.exists("jumpsync:access-refresh:acme")  # released after the failure
    monkeypatch.undo()
    assert stored.refresh_connectors(engine, ["acme"], client)[0].outcome == "rendered"


def build_second_connector(engine) -> str:
    from tests.support.databases import add_connector, add_group_members

    add_group_members(engine, add_connector(engine, "beta"), "g-1", ["u-1", "u-2"])
    return "beta"


def test_commands_serve_the_rendering_and_live_computes(run, tenant, tmp_path, terminal):
    engine, cid = tenant
    stored.refresh(engine, "acme")
    # Make the stored rendering recognisable: the same version, other bytes. The commands must write them.
    with engine.connect() as connection:
        version = snapshots.data_version(connection, cid)
    marker = {name: [snapshots.compress(f"stored {name}\n")] for name in ARTIFACTS}
    summary = {kind: 90 + n for n, kind in enumerate(FINDING_KINDS)}
    marker[stored.REPORT_HEAD] = [snapshots.compress(json.dumps(
        {"connector": "acme", "summary": summary, "findings": []}))]
    staged = snapshots.StagedRendering(engine, cid)
    for name, bodies in marker.items():
        for body in bodies:
            staged.add(name, body)
    staged.commit(version, renderer=stored.renderer_version(), export_rows=7, seconds=0.1)

    assert run("report", "acme", "--format", "json").stdout == "stored report.json\n"
    assert run("report", "acme", "--format", "csv").stdout == "stored report.csv\n"
    assert run("export", "acme").stdout == "stored export.csv\n"
    assert run("export", "acme", "--format", "json").stdout == "stored export.json\n"
    target = tmp_path / "review.csv"
    written = run("export", "acme", "-o", str(target))
    assert target.read_text() == "stored export.csv\n" and "wrote 7 grants to" in written.stderr

    assert run("export", "acme", "--live").stdout_bytes == live(engine, "export.csv")
    assert run("report", "acme", "--format", "csv", "--live").stdout_bytes == live(engine, "report.csv")

    terminal(160)
    table = run("report", "acme")  # the table view reads the stored head
    assert table.exit_code == 0 and "deleted_principal_granted    94" in table.stdout
    live_table = run("report", "acme", "--live")
    assert live_table.exit_code == 0 and "deleted_principal_granted    4" in live_table.stdout
    assert run("report", "nope", "--format", "json").exit_code == 2
    assert run("export", "nope").exit_code == 2

    # [access] snapshots = false: the commands compute, whatever is stored.
    config = tmp_path / "jumpsync.toml"
    config.write_text(config.read_text() + "\n[access]\nsnapshots = false\n")
    assert run("export", "acme").stdout_bytes == live(engine, "export.csv")
    assert "deleted_principal_granted    4" in run("report", "acme").stdout


def test_changes_outside_a_full_sync_render_at_most_once_per_render_interval(tenant):
    """An incremental refresh every minute would render the whole report every minute: within
    ``render_interval`` of the last rendering of the same full sync, a change is deferred (the commands compute
    live meanwhile); past it, or for a new full sync's data, it is rendered."""
    engine, cid = tenant
    interval = timedelta(minutes=5)
    assert stored.refresh(engine, "acme", render_interval=interval).outcome == "rendered"
    WriteThrough(engine, cid, request_id="r1").group_member("g-ops", "u-bob", present=True)
    assert stored.refresh(engine, "acme", render_interval=interval).outcome == "deferred"
    assert served(engine, "export.csv") is None and b"u-bob" in live(engine, "export.csv")  # never stale bytes
    with Session(engine) as session:  # as if the rendering were older than the interval
        session.execute(update(AccessSnapshot).where(AccessSnapshot.connector_id == cid)
                        .values(rendered_at=utcnow() - interval - timedelta(seconds=1)))
        session.commit()
    assert stored.refresh(engine, "acme", render_interval=interval).outcome == "rendered"
    assert served(engine, "export.csv") == live(engine, "export.csv")
    assert stored.refresh(engine, "acme", render_interval=interval).outcome == "current"
    add_run(engine, cid, "succeeded")  # a new full sync's data: rendered at once, however young the last one
    assert stored.refresh(engine, "acme", render_interval=interval).outcome == "rendered"
