"""The library's work off the GUI thread: indexing on a thread of its own, and every other use of the library
database (listing, details, removing, searching) on one long-lived library thread.

A ``LibraryDatabase`` belongs to the thread that opened it, so each of these threads opens its own: an index run
opens one for its run (a long write), the library thread one for as long as the window lives (short reads and
the searches of a conversation's questions). WAL lets the library thread read while an index writes.

The window's questions are answered on the GUI thread (``ChatSession.engine_messages``), which searches its
passage source synchronously; for libraries that source is ``ThreadedLibraryPassages``, which hands the search to
the library thread and waits for it. A search is a few milliseconds (an FTS5 query, a numpy scan and one short
text embedded); the embedding model's load (about half a second) is started on the library thread as soon as a
conversation chooses its libraries (``LibraryThread.prepare``), so a question only waits for it when asked in
that first half second.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import shiboken6
from PySide6.QtCore import QObject, Signal

from app.core.documents.retrieval import Hit
from app.core.errors import UserError
from app.core.library.database import LibraryDatabase
from app.core.library.indexing import IndexProgress, IndexReport, define_library, index_library
from app.core.library.search import LibraryPassages
from app.core.llm.activity import EngineActivity
from app.core.llm.load_options import physical_cores
from app.core.priority import lower_this_thread
from app.ui.background import keep_until_deleted

log = logging.getLogger(__name__)

T = TypeVar("T")

# Longest a question waits for the library thread: the embedding model's load plus a search, with room for a
# slow disk. Past it the question goes without library excerpts rather than freezing the window.
SEARCH_WAIT_S = 20.0


class _Relay(QObject):
    """Carries a call back to the GUI thread. Kept for good (``keep_until_deleted``): the library thread may
    still emit on it while the window closes."""

    deliver = Signal(object)
    problem = Signal(str)


class LibraryThread:
    """One thread that owns a ``LibraryDatabase`` (opened at first use) and the passages of the libraries the
    shown conversation uses; ``call`` runs work there and brings its result back to the GUI thread.

    ``problem`` (a signal of ``relay``) carries a sentence for the person when a search could not use the
    libraries (one was removed, its embedding model is gone)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.notice = ""  # the database's note when it had to be moved aside, once it is open
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="library")
        self._closed = False  # after ``shutdown``, work asked for (by widgets closing, say) is not done
        self._db: LibraryDatabase | None = None
        self._passages: LibraryPassages | None = None
        self.relay = _Relay()
        keep_until_deleted(self.relay)
        self.relay.deliver.connect(lambda call: call())

    # -- on the library thread ---------------------------------------------------------------------------------

    def _database(self) -> LibraryDatabase:
        if self._db is None:
            self._db = LibraryDatabase(self.db_path)
            self.notice = self._db.notice
        return self._db

    def _passages_for(self, names: tuple[str, ...]) -> LibraryPassages:
        if self._passages is None or tuple(self._passages.names) != names:
            self._drop_passages()
            self._passages = LibraryPassages(self._database(), list(names))
        return self._passages

    def _drop_passages(self) -> None:
        if self._passages is not None:
            self._passages.close()
            self._passages = None

    def _search(self, names: tuple[str, ...], question: str, limit: int) -> list[Hit]:
        try:
            return self._passages_for(names).search(question, limit)
        except UserError as error:
            self._drop_passages()
            self.relay.problem.emit(str(error))
            return []

    def _prepare(self, names: tuple[str, ...]) -> None:
        try:
            self._passages_for(names).preload()
        except UserError as error:
            self._drop_passages()
            self.relay.problem.emit(str(error))

    # -- from the GUI thread -----------------------------------------------------------------------------------

    def call(
        self,
        work: Callable[[LibraryDatabase], T],
        on_result: Callable[[T], None],
        on_error: Callable[[str], None],
        *,
        owner: QObject,
    ) -> None:
        """Run ``work`` with the thread's database; ``on_result`` (or ``on_error`` with a sentence) runs on the
        GUI thread, unless ``owner`` was deleted meanwhile."""
        relay = self.relay

        def back(call: Callable[[], None]) -> None:
            def checked() -> None:
                if shiboken6.isValid(owner):  # a panel closed meanwhile is not called
                    call()

            relay.deliver.emit(checked)

        def run() -> None:
            try:
                result = work(self._database())
            except UserError as error:
                message = str(error)
                back(lambda: on_error(message))
            except Exception:
                log.exception("library work failed")
                back(lambda: on_error("The library index could not be read; see the log for details."))
            else:
                back(lambda: on_result(result))

        self._submit(run)

    def _submit(self, work: Callable[..., object], *args: object) -> concurrent.futures.Future[object] | None:
        """``work`` queued on the library thread; None once the thread was shut down."""
        if self._closed:
            return None
        return self._executor.submit(work, *args)

    def prepare(self, names: list[str]) -> None:
        """Open the passages of ``names`` and load their embedding models now, before the first question."""
        self._submit(self._prepare, tuple(names))

    def forget_passages(self) -> None:
        """A library was indexed again or removed: its passages (and model) are opened afresh at next use."""
        self._submit(self._drop_passages)

    def passages(self, names: list[str]) -> ThreadedLibraryPassages:
        return ThreadedLibraryPassages(self, tuple(names))

    def search(self, names: tuple[str, ...], question: str, limit: int) -> list[Hit]:
        """Search on the library thread and wait for it (see the module's docstring)."""
        future = self._submit(self._search, names, question, limit)
        if future is None:
            return []
        try:
            return cast(list[Hit], future.result(timeout=SEARCH_WAIT_S))
        except concurrent.futures.TimeoutError:
            log.warning("a library search took over %.0f s; the question goes without it", SEARCH_WAIT_S)
            self.relay.problem.emit(
                "The library took too long to search, so this question was answered without it. Ask again "
                "in a moment."
            )
            return []

    def shutdown(self) -> None:
        """Close what the thread opened, on the thread; returns at once."""

        def close() -> None:
            self._drop_passages()
            if self._db is not None:
                self._db.close()
                self._db = None

        if self._closed:
            return
        self._executor.submit(close)
        self._closed = True
        self._executor.shutdown(wait=False)


@dataclass(frozen=True)
class ThreadedLibraryPassages:
    """The libraries a conversation uses as its ``PassageSource``, searched on the library thread."""

    thread: LibraryThread
    names: tuple[str, ...]

    def search(self, question: str, limit: int = 8) -> list[Hit]:
        return self.thread.search(self.names, question, limit)

    def opening_passages(self, limit: int = 3) -> list[Hit]:
        return []  # a library has no one beginning to read for "summarize this"


@dataclass(frozen=True)
class IndexRequest:
    """Add ``roots`` to library ``name`` (created if new) and bring it up to date; ``embedding_model`` None
    keeps the library's own (or none)."""

    name: str
    roots: tuple[Path, ...] = ()
    embedding_model: Path | None = None


class IndexSignals(QObject):
    """Signals of an index run, emitted on its thread and queued to the GUI thread (kept for good, as the run
    may end after the window closed):
    progress(IndexProgress), finished(IndexReport), failed(str): a sentence.
    """

    progress = Signal(IndexProgress)
    finished = Signal(IndexReport)
    failed = Signal(str)


class IndexRun:
    """One index run on a thread of its own, with its own connection to the library database. ``cancel``
    stops it after the passage being embedded; what it committed stays."""

    def __init__(self, db_path: Path, request: IndexRequest, yield_to: EngineActivity | None = None) -> None:
        self.db_path = db_path
        self.request = request
        self.yield_to = yield_to  # the window's engine: each batch of passages waits while it answers
        self.cancel = threading.Event()
        self.signals = IndexSignals()
        keep_until_deleted(self.signals)
        self._thread = threading.Thread(target=self._run, name=f"index {request.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        signals = self.signals
        # Hours of embedding on a thread of its own: it yields a core to the GUI thread and to a reply.
        lower_this_thread()
        try:
            db = LibraryDatabase(self.db_path)
            try:
                define_library(db, self.request.name, list(self.request.roots), self.request.embedding_model)
                report = index_library(
                    db,
                    self.request.name,
                    progress=signals.progress.emit,
                    cancel=self.cancel,
                    # Half the cores at most, and none while the engine answers: a reply the person is waiting
                    # for goes first.
                    threads=max(1, physical_cores() // 2),
                    yield_to=self.yield_to,
                )
            finally:
                db.close()
        except UserError as error:
            signals.failed.emit(str(error))
        except Exception:
            log.exception("indexing the library %s failed", self.request.name)
            signals.failed.emit(
                f'Indexing "{self.request.name}" failed; what was indexed is kept. Try Update, and see the '
                "log if it fails again."
            )
        else:
            signals.finished.emit(report)
