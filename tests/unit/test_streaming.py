"""pipeline.streaming: writes behind the event loop, in order and bounded; fetches in one bounded window."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from pipeline.streaming import FetchWindow, WriteBehind


def test_writes_run_in_order_on_one_thread_other_than_the_loop():
    done, threads = [], set()

    def write(n):
        threads.add(threading.get_ident())
        time.sleep(0.001)
        done.append(n)

    async def main():
        async with WriteBehind(max_pending=3) as writes:
            for n in range(20):
                await writes.submit(write, n)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert done == list(range(20))
    assert len(threads) == 1 and loop_thread not in threads


def test_submit_waits_when_too_many_writes_are_pending():
    release = threading.Event()
    started = []

    def slow(n):
        started.append(n)
        release.wait(5)

    async def main():
        async with WriteBehind(max_pending=2) as writes:
            await writes.submit(slow, 0)
            await writes.submit(slow, 1)
            third = asyncio.ensure_future(writes.submit(slow, 2))
            await asyncio.sleep(0.05)
            blocked = not third.done()
            release.set()
            await third
            return blocked

    assert asyncio.run(main()) is True
    assert started == [0, 1, 2]


def test_a_failed_write_fails_the_block_and_later_writes_never_run():
    ran = []

    def boom():
        raise RuntimeError("disk full")

    async def main():
        async with WriteBehind(max_pending=10) as writes:
            await writes.submit(boom)
            await writes.submit(time.sleep, 0.05)
            await writes.submit(ran.append, "late")
            await writes.drain()

    with pytest.raises(RuntimeError, match="disk full"):
        asyncio.run(main())
    assert ran == []


def test_no_write_runs_after_a_failed_one_even_while_the_loop_is_busy():
    """The loop has not seen the failure yet (it is busy elsewhere) when the thread is free to go on."""
    ran = []

    def boom():
        raise RuntimeError("disk full")

    async def main():
        async with WriteBehind(max_pending=10) as writes:
            await writes.submit(boom)
            await writes.submit(ran.append, "late")
            time.sleep(0.2)  # the loop blocked: nothing can cancel the queued write in time
            await writes.drain()

    with pytest.raises(RuntimeError, match="disk full"):
        asyncio.run(main())
    assert ran == []


def test_leaving_with_an_error_waits_for_the_running_write_and_drops_the_queued():
    finished, queued = [], []

    def running():
        time.sleep(0.1)
        finished.append(True)

    async def main():
        async with WriteBehind(max_pending=10) as writes:
            await writes.submit(running)
            await writes.submit(queued.append, 1)
            raise ValueError("the fetch failed")

    with pytest.raises(ValueError):
        asyncio.run(main())
    assert finished == [True]  # the running write was not abandoned mid-transaction
    assert queued == []


def test_window_keeps_at_most_size_fetches_running_and_returns_every_result():
    running = peak = 0

    async def fetch(n):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (n % 3))
        running -= 1
        return n * 10

    async def main():
        results = []
        async with FetchWindow(fetch, size=4) as window:
            for n in range(50):
                results.extend(await window.add(n))
            results.extend(await window.drain())
        return results

    results = asyncio.run(main())
    assert sorted(results) == [n * 10 for n in range(50)]
    assert peak == 4


def test_window_failure_propagates_and_cancels_the_others():
    cancelled = []

    async def fetch(n):
        if n == 3:
            raise LookupError("group 3 vanished")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    async def main():
        async with FetchWindow(fetch, size=8) as window:
            for n in range(6):
                await window.add(n)
            await window.drain()

    with pytest.raises(LookupError, match="group 3"):
        asyncio.run(main())
    assert sorted(cancelled) == [0, 1, 2, 4, 5]


def test_window_size_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        FetchWindow(asyncio.sleep, size=0)


def test_the_gil_switch_interval_is_shortened_while_writing_and_restored():
    import sys

    before = sys.getswitchinterval()
    seen = []

    async def main():
        async with WriteBehind() as writes:
            await writes.submit(lambda: seen.append(sys.getswitchinterval()))

    asyncio.run(main())
    assert seen == [min(before, WriteBehind.switch_interval)]
    assert sys.getswitchinterval() == before
