"""One thread that owns something not thread-safe (a llama.cpp context, an SQLite connection) for the server.

The thing is made on the thread at its first job and used only there; request handlers hand it jobs from their
worker threads and wait for the answers, one job at a time, in the order given.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

Owned = TypeVar("Owned")
T = TypeVar("T")


class OwnerThread(Generic[Owned]):
    """Runs jobs with the one ``Owned`` that ``make`` builds on this thread (at the first job; a job whose
    ``make`` failed raises that failure, and the next job tries again); ``close`` ends the thread and hands the
    thing to ``release``."""

    def __init__(self, name: str, make: Callable[[], Owned], release: Callable[[Owned], None]) -> None:
        self._make = make
        self._release = release
        self._jobs: queue.Queue[tuple[Callable[[Owned], Any], Future[Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        owned: Owned | None = None
        try:
            while (item := self._jobs.get()) is not None:
                job, answer = item
                if not answer.set_running_or_notify_cancel():
                    continue
                try:
                    if owned is None:
                        owned = self._make()
                    answer.set_result(job(owned))
                except BaseException as error:
                    answer.set_exception(error)
        finally:
            if owned is not None:
                self._release(owned)

    def run(self, job: Callable[[Owned], T]) -> T:
        """``job(owned)``, run on the owner's thread in its turn; its result, or what it raised."""
        answer: Future[T] = Future()
        self._jobs.put((job, answer))
        return answer.result()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(10)
