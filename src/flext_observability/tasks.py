"""The collector's background tasks and threads: stopping a task, and `Worker`, a thread
that runs blocking calls in turn for the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")
# What a worker's call hands back on the loop: its result, or the exception it raised.
Then = Callable[[Any, Exception | None], None]


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has ended; None or an ended task is fine."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Worker:
    """One thread running blocking calls in turn for an event loop. A call costs a C queue's
    put and one `call_soon_threadsafe` back: about half the CPU of `run_in_executor`'s
    round trip (its concurrent future, the asyncio future chained to it, and the awaiting
    task's extra step), which counts where a call is made per request."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Then] | None] = (
            queue.SimpleQueue()
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread, for the running loop."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
        self._thread.start()

    def post(self, call: Callable[[], Any], then: Then) -> None:
        """Run `call()` on the thread, then `then(result, None)` or `then(None, error)` on
        the loop."""
        self._calls.put((call, then))

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` on the thread; its result or its exception."""
        loop = self._loop
        if loop is None:
            raise RuntimeError(f"{self._name} is not started")
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: T, error: Exception | None) -> None:
            if future.cancelled():
                return
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

        self.post(partial(call, *args), settle)
        return await future

    async def stop(self) -> None:
        """Let the calls posted before end, then end the thread."""
        thread = self._thread
        if thread is None:
            return
        await self.run(thread.is_alive)
        self._calls.put(None)
        thread.join()
        self._thread = None

    def _work(self) -> None:
        loop = self._loop
        while (item := self._calls.get()) is not None:
            call, then = item
            try:
                result = call()
            except Exception as error:  # handed to the loop: the caller decides
                outcome: tuple[Any, Exception | None] = (None, error)
            else:
                outcome = (result, None)
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(then, *outcome)
