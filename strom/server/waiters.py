"""Waiting in handlers: long polls parked until an append, and answers a component gives later by callback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

T = TypeVar("T")


class AppendWaiters:
    """Futures keyed by partition; an append resolves every future waiting on its partition.

    A fetch waits on one future registered under all of its partitions, so the first append to any of them
    wakes it; the fetch then re-reads and decides whether it has enough bytes.
    """

    def __init__(self) -> None:
        self._waiting: dict[Hashable, list[asyncio.Future[None]]] = {}

    def notify(self, key: Hashable) -> None:
        futures = self._waiting.pop(key, None)
        if futures:
            for future in futures:
                if not future.done():
                    future.set_result(None)

    async def wait(self, keys: Iterable[Hashable], timeout: float) -> None:
        """Return after an append to any of `keys`, or after `timeout` seconds."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        keys = list(keys)
        for key in keys:
            self._waiting.setdefault(key, []).append(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            for key in keys:
                futures = self._waiting.get(key)
                if futures and future in futures:
                    futures.remove(future)
                    if not futures:
                        del self._waiting[key]


async def answered_later(start: Callable[[Callable[[T], None]], None]) -> T:
    """Await an answer a sans-I/O component gives through a callback (a parked JoinGroup or SyncGroup).

    `start` registers the request with a `respond` callback; answers that arrive after the client went away
    (the future already cancelled) are dropped.
    """
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def respond(answer: T) -> None:
        if not future.done():
            future.set_result(answer)

    start(respond)
    return await future
