"""A fetch part taken over goes on from its checkpoint (issue 27, fault 3): the attempt that dies mid-listing has
saved the pages it wrote; the next attempt requests only the others, and the part still ends exactly as a whole
listing would: updates written, what is gone deleted, grants of resources it did not list again kept."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session, select

from connector.client_factory import make_client
from jumpcloud.client import JumpCloudClient
from jumpcloud.retry import RetryPolicy
from models import queries
from models.states import PartStatus
from models.tables import SyncPart
from pipeline import checkpoint, sync
from pipeline.parts import run_fetch_part
from simulator.generator import TenantSpec
from tests.support.constants import TEST_API_KEY, TEST_KEY_ENV
from tests.support.direct_sync import NAME, make_settings, run_sync
from tests.support.expected import actual_state, assert_same, expected_state

PAGE = 10  # records a page: many pages from a small tenant
EVERY_PAGE = timedelta(0)  # a checkpoint as soon as a page is done


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_API_KEY)


class WorkerDied(BaseException):
    """Stands for the process dying: not an ``Exception``, so nothing of the part records an end after it."""


class DiesAfter(httpx.AsyncBaseTransport):
    """Real HTTP to the simulator; the process dies at the first request whose path matches ``path`` (a regular
    expression) after ``count`` such requests answered and once ``ready()`` (the part saved a checkpoint). It
    never holds a request back: one held would keep its page from ever being done."""

    def __init__(self, path: str, count: int, ready: Callable[[], bool]) -> None:
        self.path, self.count, self.ready, self.seen = re.compile(path), count, ready, 0
        self._http = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.path.fullmatch(request.url.path):
            self.seen += 1
            if self.seen > self.count and self.ready():
                raise WorkerDied(f"died after {self.count} requests to {self.path.pattern}")
        return await self._http.handle_async_request(request)

    async def aclose(self) -> None:
        await self._http.aclose()


def small_pages(transport: httpx.AsyncBaseTransport | None = None):
    """A client factory: the connector's client, with ``PAGE`` records a page and, if given, the transport."""
    def factory(connector) -> JumpCloudClient:
        return JumpCloudClient(base_url=connector.base_url, api_key=connector.api_key(), page_size=PAGE,
                               max_in_flight=1, retry=RetryPolicy(max_attempts=2, base_delay=0.01),
                               transport=transport)
    return factory


def part_row(engine, run_id: int, name: str) -> SyncPart:
    with Session(engine) as session:
        return session.exec(select(SyncPart).where(SyncPart.run_id == run_id, SyncPart.name == name)).one()


def die_mid_listing(engine, settings, run_id: int, part: str, path: str, count: int) -> checkpoint.Checkpoint:
    """Run the part until its process "dies" after ``count`` requests to ``path``; the checkpoint it left."""
    connector = settings.file.connectors[0]
    with pytest.raises(WorkerDied):
        def ready() -> bool:
            saved = checkpoint.load(engine, run_id, part)
            return saved is not None and bool(saved.done)

        run_fetch_part(engine, connector, run_id, part, small_pages(DiesAfter(path, count, ready)),
                       checkpoint_every=EVERY_PAGE)
    row = part_row(engine, run_id, part)
    assert row.status == PartStatus.RUNNING and row.attempt == 1
    saved = checkpoint.load(engine, run_id, part)
    assert saved is not None and saved.done, "no checkpoint saved before the death"
    return saved


def test_a_part_taken_over_lists_only_the_pages_not_written(engine, db_url, simulator):
    sim = simulator(TenantSpec(seed=91, users=95, admins=2, groups=3, apps=2))
    settings = make_settings(db_url, sim.url)
    assert run_sync(settings, engine).status == "succeeded"
    users = sorted(u["_id"] for u in sim.dump()["users"])
    gone, changed = users[3], users[-2]  # on the first page (written before the death) and on the last
    sim.delete_user(gone)
    sim.update_user(changed, department="Resumed")

    started = sync.begin(settings, engine, NAME, trigger="manual")
    saved = die_mid_listing(engine, settings, started.run_id, "user", "/api/systemusers", count=4)
    pages = -(-len(users[:-1]) // PAGE)
    assert 0 in saved.done and len(saved.done) < pages

    sim.reset_stats()
    result = run_fetch_part(engine, settings.file.connectors[0], started.run_id, "user", small_pages(),
                            checkpoint_every=EVERY_PAGE)  # the message delivered again: attempt 2
    assert result.status == PartStatus.SUCCEEDED, result
    listed = sim.stats()["by_route"]["GET /api/systemusers"]
    assert listed == 1 + pages - len(saved.done), (listed, pages, saved.done)  # page 0 for the total, the rest once
    row = part_row(engine, started.run_id, "user")
    assert row.attempt == 2 and row.checkpoint is None  # cleared at the end
    assert row.counts["pages_resumed"] == len(saved.done) and row.counts["deleted"] == 1
    assert row.counts["updated"] == 1

    for name in started.parts:
        if name != "user":
            sync.run_part(settings, engine, started.run_id, name, NAME)
    assert sync.finalize(engine, started.run_id).status == "succeeded"
    rows = {r.id: r for r in queries.resources(engine, NAME, "user")}
    assert rows[gone].deleted and rows[changed].profile["department"] == "Resumed"
    assert_same(actual_state(queries.resources(engine, NAME), queries.grants(engine, NAME)),
                expected_state(sim.dump()))


def test_a_group_part_resumed_keeps_and_deletes_members_as_a_whole_listing_would(engine, db_url, simulator):
    sim = simulator(TenantSpec(seed=92, users=60, admins=2, groups=35, apps=2))
    settings = make_settings(db_url, sim.url)
    assert run_sync(settings, engine).status == "succeeded"
    groups = sorted(sim.dump()["groups"], key=lambda g: g["name"])
    early = next(g for g in groups[:PAGE] if g["members"])  # on the first page: written before the death
    late = next(g for g in reversed(groups) if len(g["members"]) >= 2)  # on a page listed after it
    sim.group_member(early["id"], early["members"][0], "remove")
    sim.group_member(late["id"], late["members"][0], "remove")

    started = sync.begin(settings, engine, NAME, trigger="manual")
    requests = {g["id"]: max(1, -(-len(g["members"]) // PAGE)) for g in groups}  # member pages of each group
    # Dies among the member listings, once a page is written: not all of them are.
    saved = die_mid_listing(engine, settings, started.run_id, "group", "/api/v2/usergroups/[^/]+/members",
                            count=sum(requests.values()) // 2)
    assert saved.grants is not None and early["id"] in saved.grants.seen
    assert saved.grants.doomed, "the removal on a written page was noted in the checkpoint"

    sim.reset_stats()
    result = run_fetch_part(engine, settings.file.connectors[0], started.run_id, "group", small_pages(),
                            checkpoint_every=EVERY_PAGE)
    assert result.status == PartStatus.SUCCEEDED, result
    members_listed = sim.stats()["by_route"]["GET /api/v2/usergroups/{id}/members"]
    rest = [g["id"] for index, g in enumerate(groups) if index // PAGE * PAGE not in saved.done]
    assert members_listed == sum(requests[group] for group in rest), (members_listed, saved.done)
    for name in started.parts:
        if name != "group":
            sync.run_part(settings, engine, started.run_id, name, NAME)
    assert sync.finalize(engine, started.run_id).status == "succeeded"
    member = {(g.resource_id, g.principal_id): g.deleted_at is not None for g in queries.grants(engine, NAME)
              if g.resource_type == "group" and g.via is None}
    assert member[(early["id"], early["members"][0])] is True  # noted before the death, deleted after
    assert member[(late["id"], late["members"][0])] is True
    assert_same(actual_state(queries.resources(engine, NAME), queries.grants(engine, NAME)),
                expected_state(sim.dump()))


def test_a_checkpoint_of_another_page_size_lists_everything_again(engine, db_url, simulator):
    sim = simulator(TenantSpec(seed=93, users=45, admins=1, groups=2, apps=1))
    settings = make_settings(db_url, sim.url)
    started = sync.begin(settings, engine, NAME, trigger="manual")
    die_mid_listing(engine, settings, started.run_id, "user", "/api/systemusers", count=2)
    sim.reset_stats()
    connector = settings.file.connectors[0]
    result = run_fetch_part(engine, connector, started.run_id, "user", make_client)  # 100 a page now
    assert result.status == PartStatus.SUCCEEDED
    assert sim.stats()["by_route"]["GET /api/systemusers"] == 1
    assert {r.id for r in queries.resources(engine, NAME, "user")} == {u["_id"] for u in sim.dump()["users"]}
