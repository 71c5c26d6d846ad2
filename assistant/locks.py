"""A readers-writer lock: many chat replies read the weights at once, a weight change waits.

Replies hold the read side for their whole generation, so no reply ever mixes weights from
before and after a promotion or rollback; the write side is held only while a finished
delta is added to (or removed from) the live weights, which takes milliseconds.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class ReadWriteLock:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            # writers go first once they wait, so a stream of chats cannot starve a promotion
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()

    @property
    def readers(self) -> int:
        return self._readers
