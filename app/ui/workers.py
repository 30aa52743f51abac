"""The engine thread: one long-lived thread owns the Engine, and so the one ``Llama``.

The GUI asks through ``EngineClient``: each request carries an id and goes into a queue that the engine
thread serves in order; answers come back as Qt signals carrying the same id, delivered on the GUI thread, and
answers to a request that is no longer current are dropped, so the window never sees a stale token. Stopping
does not queue behind the work it stops: ``EngineClient.stop()`` calls ``Engine.cancel()`` directly, which only
sets an event the engine checks between tokens and inside llama.cpp's abort callback.

The thread is a plain Python thread serving a queue rather than a ``QThread`` with slots: requests are
handled strictly in the order they were made, the thread runs no Qt event loop that a long reply would block,
and Qt appears on it only as the signals it emits, which Qt queues to the GUI thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal, Slot

from app.core.errors import Cancelled, UserError
from app.core.llm.engine import ChatMessage, Engine, LoadOptions, ModelInfo, ReplyStats
from app.core.modes import SamplingOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatRequest:
    messages: list[ChatMessage]
    sampling: SamplingOptions


@dataclass(frozen=True)
class LoadRequest:
    path: str
    options: LoadOptions


@dataclass(frozen=True)
class EngineJob:
    """Any other work that needs the model (a document summary): ``run(engine, report)`` on the engine
    thread, where ``report(value)`` sends a progress value to the GUI; its return value is the result."""

    run: Callable[[Engine, Callable[[object], None]], object]


class _EngineSignals(QObject):
    """Lives on the GUI thread; emitted from the engine thread, so every connection is queued."""

    loaded = Signal(int, object)  # ModelInfo
    load_failed = Signal(int, str, object)  # the sentence, and the model still loaded (or None)
    token = Signal(int, str)
    finished = Signal(int, object)  # ReplyStats
    failed = Signal(int, str)
    job_progress = Signal(int, object)
    job_done = Signal(int, object)


class _EngineThread:
    """Serves requests one at a time; the only code that touches the engine apart from ``cancel()``."""

    def __init__(self, engine: Engine, signals: _EngineSignals) -> None:
        self.engine = engine
        self.signals = signals
        self.requests: queue.SimpleQueue[tuple[int, object, threading.Event] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="engine", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            item = self.requests.get()
            if item is None:
                self.engine.unload()
                return
            request_id, request, cancel = item
            try:
                if isinstance(request, LoadRequest):
                    self._load(request_id, request, cancel)
                elif isinstance(request, ChatRequest):
                    self._chat(request_id, request, cancel)
                elif isinstance(request, EngineJob):
                    self._job(request_id, request, cancel)
            except Exception:  # never let the engine thread die: the window depends on it
                log.exception("engine request %s failed", request_id)

    def _load(self, request_id: int, request: LoadRequest, cancel: threading.Event) -> None:
        message = ""
        try:
            # No progress callback: it would run inside llama.cpp's C callback; the client polls
            # ``engine.load_fraction`` instead, which is only a float written from there.
            info = self.engine.load(request.path, request.options, cancel=cancel)
        except Cancelled:
            pass
        except UserError as exc:
            message = str(exc)
        except Exception as exc:  # a bug, but the window must live on
            log.exception("loading %s failed", request.path)
            message = f"Loading the model failed unexpectedly ({exc}). See the log for details."
        else:
            self.signals.loaded.emit(request_id, info)
            return
        self.signals.load_failed.emit(request_id, message, self.engine.model)

    def _chat(self, request_id: int, request: ChatRequest, cancel: threading.Event) -> None:
        try:
            reply = self.engine.chat(request.messages, request.sampling, cancel=cancel)
            for piece in reply:
                self.signals.token.emit(request_id, piece)
        except UserError as exc:
            self.signals.failed.emit(request_id, str(exc))
        except Exception as exc:
            log.exception("generating a reply failed")
            self.signals.failed.emit(
                request_id, f"The reply failed unexpectedly ({exc}). Try again, or reload the model."
            )
        else:
            self.signals.finished.emit(request_id, reply.stats)

    def _job(self, request_id: int, job: EngineJob, cancel: threading.Event) -> None:
        if cancel.is_set():  # stopped while it waited its turn
            self.signals.failed.emit(request_id, "")
            return
        try:
            result = job.run(self.engine, lambda value: self.signals.job_progress.emit(request_id, value))
        except Cancelled:
            self.signals.failed.emit(request_id, "")
        except UserError as exc:
            self.signals.failed.emit(request_id, str(exc))
        except Exception as exc:
            log.exception("an engine job failed")
            self.signals.failed.emit(request_id, f"The work failed unexpectedly ({exc}). Try again.")
        else:
            self.signals.job_done.emit(request_id, result)


class EngineClient(QObject):
    """The GUI thread's handle on the engine thread. Signals re-emitted here are for the current request only.

    Signals:
        load_progress(float): 0..1 while a model loads.
        model_loaded(object): ModelInfo of the model now loaded.
        load_failed(str): a sentence; empty when the user cancelled.
        token(str): a piece of the reply being written.
        reply_finished(object): ReplyStats of the finished (or stopped) reply.
        reply_failed(str): a sentence.
        job_progress(object): a value reported by the running EngineJob.
        job_finished(object): the running EngineJob's result.
        job_failed(str): a sentence; empty when the user cancelled.
    """

    load_progress = Signal(float)
    model_loaded = Signal(object)
    load_failed = Signal(str)
    token = Signal(str)
    reply_finished = Signal(object)
    reply_failed = Signal(str)
    job_progress = Signal(object)
    job_finished = Signal(object)
    job_failed = Signal(str)

    def __init__(self, engine: Engine | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine or Engine()
        self._signals = _EngineSignals(self)
        self._signals.loaded.connect(self._on_loaded)
        self._signals.load_failed.connect(self._on_load_failed)
        self._signals.token.connect(self._on_token)
        self._signals.finished.connect(self._on_finished)
        self._signals.failed.connect(self._on_failed)
        self._signals.job_progress.connect(self._on_job_progress)
        self._signals.job_done.connect(self._on_job_done)
        self._thread = _EngineThread(self.engine, self._signals)
        self._progress_timer = QTimer(self)
        self._progress_timer.setInterval(50)
        self._progress_timer.timeout.connect(lambda: self.load_progress.emit(self.engine.load_fraction))
        self._next_id = 0
        self._load_id = -1
        self._chat_id = -1
        self._job_id = -1
        self._cancels: dict[int, threading.Event] = {}  # per request, so a stop reaches one still queued
        self.model: ModelInfo | None = None

    # -- requests ------------------------------------------------------------------------------------

    def _submit(self, request: object) -> int:
        self._next_id += 1
        cancel = threading.Event()
        self._cancels[self._next_id] = cancel
        self._thread.requests.put((self._next_id, request, cancel))
        return self._next_id

    def _cancel(self, request_id: int) -> None:
        event = self._cancels.pop(request_id, None)
        if event is not None:
            event.set()

    @property
    def is_loading(self) -> bool:
        return self._load_id != -1

    @property
    def is_generating(self) -> bool:
        return self._chat_id != -1

    @property
    def is_busy(self) -> bool:
        return self._load_id != -1 or self._chat_id != -1 or self._job_id != -1

    def load(self, path: str, options: LoadOptions) -> None:
        self.stop()
        self.engine.load_fraction = 0.0
        self._progress_timer.start()
        self._load_id = self._submit(LoadRequest(path, options))

    def chat(self, messages: list[ChatMessage], sampling: SamplingOptions) -> None:
        self._chat_id = self._submit(ChatRequest(list(messages), sampling))

    def run_job(self, job: EngineJob) -> None:
        self._job_id = self._submit(job)

    def stop(self) -> None:
        """Stop the load, reply or job in progress or queued. Returns at once; the work ends as cancelled."""
        if self.is_busy:
            for request_id in (self._load_id, self._chat_id, self._job_id):
                self._cancel(request_id)
            self.engine.cancel()

    def abandon_reply(self) -> None:
        """Stop the reply and forget it: its remaining tokens and its end are dropped, not delivered."""
        if self._chat_id != -1:
            self._cancel(self._chat_id)
            self.engine.cancel()
            self._chat_id = -1

    def shutdown(self, timeout_s: float = 10.0) -> None:
        for event in self._cancels.values():
            event.set()
        self.engine.cancel()
        self._load_id = self._chat_id = self._job_id = -1
        self._progress_timer.stop()
        self._thread.requests.put(None)
        self._thread.thread.join(timeout_s)
        if self._thread.thread.is_alive():
            log.warning("the engine thread did not stop in time")

    # -- answers, filtered by request id --------------------------------------------------------------

    @Slot(int, object)
    def _on_loaded(self, request_id: int, info: ModelInfo) -> None:
        self._cancels.pop(request_id, None)
        if request_id == self._load_id:
            self._load_id = -1
            self._progress_timer.stop()
            self.model = info
            self.model_loaded.emit(info)

    @Slot(int, str, object)
    def _on_load_failed(self, request_id: int, message: str, still_loaded: ModelInfo | None) -> None:
        self._cancels.pop(request_id, None)
        if request_id == self._load_id:
            self._load_id = -1
            self._progress_timer.stop()
            self.model = still_loaded
            self.load_failed.emit(message)

    @Slot(int, str)
    def _on_token(self, request_id: int, text: str) -> None:
        if request_id == self._chat_id:
            self.token.emit(text)

    @Slot(int, object)
    def _on_finished(self, request_id: int, stats: ReplyStats) -> None:
        self._cancels.pop(request_id, None)
        if request_id == self._chat_id:
            self._chat_id = -1
            self.reply_finished.emit(stats)

    @Slot(int, object)
    def _on_job_progress(self, request_id: int, value: object) -> None:
        if request_id == self._job_id:
            self.job_progress.emit(value)

    @Slot(int, object)
    def _on_job_done(self, request_id: int, result: object) -> None:
        self._cancels.pop(request_id, None)
        if request_id == self._job_id:
            self._job_id = -1
            self.job_finished.emit(result)

    @Slot(int, str)
    def _on_failed(self, request_id: int, message: str) -> None:
        self._cancels.pop(request_id, None)
        if request_id == self._chat_id:
            self._chat_id = -1
            self.reply_failed.emit(message)
        elif request_id == self._job_id:
            self._job_id = -1
            self.job_failed.emit(message)


class _Job(QRunnable):
    def __init__(self, relay: _JobRelay, func: Callable[[], Any]) -> None:
        super().__init__()
        self.relay = relay
        self.func = func

    def run(self) -> None:
        try:
            result = self.func()
        except Exception as exc:
            if not isinstance(exc, UserError):
                log.exception("background job failed")
            self._deliver(self.relay.failed, exc)
        else:
            self._deliver(self.relay.succeeded, result)

    @staticmethod
    def _deliver(signal: Any, value: object) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the application is quitting and the receiver is gone: nobody to tell
            log.debug("background job finished after its receiver was deleted")


class _JobRelay(QObject):
    succeeded = Signal(object)
    failed = Signal(object)


_live_relays: set[_JobRelay] = set()


def run_in_pool(
    func: Callable[[], Any],
    on_result: Callable[[Any], None],
    on_error: Callable[[BaseException], None],
) -> None:
    """Run a short job (file import, extraction, probe) on Qt's pool; the result or exception comes back on
    the GUI thread."""
    relay = _JobRelay()
    _live_relays.add(relay)

    def done_ok(result: Any) -> None:
        _live_relays.discard(relay)
        on_result(result)

    def done_error(exc: BaseException) -> None:
        _live_relays.discard(relay)
        on_error(exc)

    relay.succeeded.connect(done_ok)
    relay.failed.connect(done_error)
    QThreadPool.globalInstance().start(_Job(relay, func))
