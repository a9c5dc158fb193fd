"""A value that changes over time, where only the latest one matters (asyncio).

The source publishes its whole state; the reporter wakes on a change and sends
the difference from what it sent last. Intermediate states a slow consumer
missed are never needed, so nothing queues up.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Latest(Generic[T]):
    def __init__(self) -> None:
        self._value: T | None = None
        self._version = 0
        self._changed = asyncio.Condition()

    @property
    def version(self) -> int:
        return self._version

    @property
    def value(self) -> T | None:
        return self._value

    async def publish(self, value: T) -> None:
        async with self._changed:
            self._value = value
            self._version += 1
            self._changed.notify_all()

    async def next(self, after: int) -> tuple[int, T]:
        """The first value newer than version `after` (waits for one)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._version > after)
            assert self._value is not None
            return self._version, self._value
