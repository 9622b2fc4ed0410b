"""`Worker`: blocking calls run in turn on its one thread, outcomes handed back on the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from flext_observability.tasks import Worker


def test_calls_run_in_turn_on_the_workers_thread_and_their_results_come_back():
    async def main():
        worker = Worker("test-worker")
        worker.start()
        seen = []

        def call(n):
            seen.append((n, threading.current_thread().name))
            return n * 2

        results = await asyncio.gather(*(worker.run(call, n) for n in range(5)))
        await worker.stop()
        return results, seen

    results, seen = asyncio.run(main())
    assert results == [0, 2, 4, 6, 8]
    assert seen == [(n, "test-worker") for n in range(5)]


def test_an_exception_reaches_the_caller_and_the_thread_goes_on():
    async def main():
        worker = Worker("test-worker")
        worker.start()
        with pytest.raises(ValueError, match="refused"):
            await worker.run(int, "refused")
        after = await worker.run(int, "7")
        await worker.stop()
        return after

    assert asyncio.run(main()) == 7


def test_post_hands_the_outcome_to_a_callback_on_the_loop():
    async def main():
        worker = Worker("test-worker")
        worker.start()
        loop_thread = threading.current_thread()
        done = asyncio.get_running_loop().create_future()

        def then(result, error):
            done.set_result((result, error, threading.current_thread() is loop_thread))

        worker.post(lambda: "stored", then)
        outcome = await done
        await worker.stop()
        return outcome

    assert asyncio.run(main()) == ("stored", None, True)


def test_stop_waits_for_what_was_posted_before_and_ends_the_thread():
    async def main():
        worker = Worker("test-worker")
        worker.start()
        order = []
        worker.post(lambda: order.append("posted"), lambda result, error: None)
        await worker.stop()
        alive = any(t.name == "test-worker" for t in threading.enumerate())
        with pytest.raises(RuntimeError, match="not started"):
            await Worker("never").run(int, "1")
        return order, alive

    assert asyncio.run(main()) == (["posted"], False)
