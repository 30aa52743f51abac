"""Whether the engine is at work: background work that shares the CPU with it (a library being indexed by its
own embedding model) waits while the engine answers, so a reply in progress goes first.

On a computer with few cores the two cannot both run at full speed: llama.cpp's threads wait for each other at
every step, so an embedding batch taking one core slows every token of the reply someone is watching. Indexing
can wait a few seconds; the person cannot. The engine service marks each request it runs (``working``); the
indexer asks ``wait_until_idle`` between batches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

POLL_SECONDS = 0.05  # how soon a waiter notices a cancel


class EngineActivity:
    """Counts the engine's requests running now; waits for none. Safe from any thread."""

    def __init__(self) -> None:
        self._running = 0
        self._changed = threading.Condition()

    @property
    def busy(self) -> bool:
        with self._changed:
            return self._running > 0

    def begin(self) -> None:
        with self._changed:
            self._running += 1

    def end(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()

    @contextmanager
    def working(self) -> Iterator[None]:
        self.begin()
        try:
            yield
        finally:
            self.end()

    def wait_until_idle(self, cancel: threading.Event | None = None) -> float:
        """Return once the engine runs nothing (or ``cancel`` is set); the seconds waited."""
        started = time.monotonic()
        with self._changed:
            while self._running > 0 and not (cancel is not None and cancel.is_set()):
                self._changed.wait(POLL_SECONDS)
        return time.monotonic() - started
