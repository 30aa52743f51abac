"""The engine thread: one long-lived QThread owns the Engine, and so the one ``Llama``.

The GUI asks through ``EngineClient`` (queued signals carrying a request id) and hears back through signals
carrying the same id; answers to a request that is no longer current are dropped here, so the window never
sees a stale token. Stopping does not queue behind the work it stops: ``EngineClient.stop()`` calls
``Engine.cancel()`` directly, which only sets an event the engine checks between tokens and inside
llama.cpp's abort callback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, QTimer, Signal, Slot

from app.core.engine import ChatMessage, Engine, LoadOptions, ModelInfo, ReplyStats
from app.core.errors import Cancelled, UserError
from app.core.modes import SamplingOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatRequest:
    messages: list[ChatMessage]
    sampling: SamplingOptions


class EngineWorker(QObject):
    """Lives on the engine thread; every slot runs there."""

    loaded = Signal(int, object)  # ModelInfo
    token = Signal(int, str)
    finished = Signal(int, object)  # ReplyStats
    failed = Signal(int, str)

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    @Slot(int, str, object)
    def load(self, request_id: int, path: str, options: LoadOptions) -> None:
        try:
            # No progress callback: it would run inside llama.cpp's C callback, and emitting a Qt signal from
            # there crashed the interpreter at exit. The client polls ``engine.load_fraction`` instead.
            info = self.engine.load(path, options)
        except Cancelled:
            self.failed.emit(request_id, "")
        except UserError as exc:
            self.failed.emit(request_id, str(exc))
        except Exception as exc:  # a bug, but the window must live on
            log.exception("loading %s failed", path)
            self.failed.emit(
                request_id, f"Loading the model failed unexpectedly ({exc}). See the log for details."
            )
        else:
            self.loaded.emit(request_id, info)

    @Slot(int, object)
    def chat(self, request_id: int, request: ChatRequest) -> None:
        try:
            reply = self.engine.chat(request.messages, request.sampling)
            for piece in reply:
                self.token.emit(request_id, piece)
        except UserError as exc:
            self.failed.emit(request_id, str(exc))
        except Exception as exc:
            log.exception("generating a reply failed")
            self.failed.emit(
                request_id, f"The reply failed unexpectedly ({exc}). Try again, or reload the model."
            )
        else:
            self.finished.emit(request_id, reply.stats)

    @Slot()
    def shutdown(self) -> None:
        self.engine.unload()


class EngineClient(QObject):
    """The GUI thread's handle on the engine thread. Signals re-emitted here are for the current request only.

    Signals:
        load_progress(float): 0..1 while a model loads.
        model_loaded(object): ModelInfo of the model now loaded.
        load_failed(str): a sentence; empty when the user cancelled.
        token(str): a piece of the reply being written.
        reply_finished(object): ReplyStats of the finished (or stopped) reply.
        reply_failed(str): a sentence.
    """

    load_progress = Signal(float)
    model_loaded = Signal(object)
    load_failed = Signal(str)
    token = Signal(str)
    reply_finished = Signal(object)
    reply_failed = Signal(str)

    _request_load = Signal(int, str, object)
    _request_chat = Signal(int, object)
    _request_shutdown = Signal()

    def __init__(self, engine: Engine | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine or Engine()
        self._thread = QThread()
        self._thread.setObjectName("engine")
        self._worker = EngineWorker(self.engine)
        self._worker.moveToThread(self._thread)
        self._request_load.connect(self._worker.load)
        self._request_chat.connect(self._worker.chat)
        self._request_shutdown.connect(self._worker.shutdown)
        self._worker.loaded.connect(self._on_loaded)
        self._worker.token.connect(self._on_token)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._thread.start()
        self._progress_timer = QTimer(self)
        self._progress_timer.setInterval(50)
        self._progress_timer.timeout.connect(lambda: self.load_progress.emit(self.engine.load_fraction))
        self._next_id = 0
        self._load_id = -1
        self._chat_id = -1
        self.model: ModelInfo | None = None

    # -- requests ------------------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    @property
    def is_loading(self) -> bool:
        return self._load_id != -1

    @property
    def is_generating(self) -> bool:
        return self._chat_id != -1

    def load(self, path: str, options: LoadOptions) -> None:
        self.stop()
        self._load_id = self._new_id()
        self.engine.load_fraction = 0.0
        self._progress_timer.start()
        self._request_load.emit(self._load_id, path, options)

    def chat(self, messages: list[ChatMessage], sampling: SamplingOptions) -> None:
        self._chat_id = self._new_id()
        self._request_chat.emit(self._chat_id, ChatRequest(list(messages), sampling))

    def stop(self) -> None:
        """Stop the load or reply in progress. Returns at once; the reply ends with finish_reason 'cancelled'."""
        if self._load_id != -1 or self._chat_id != -1:
            self.engine.cancel()

    def abandon_reply(self) -> None:
        """Stop the reply and forget it: its remaining tokens and its end are dropped, not delivered."""
        if self._chat_id != -1:
            self.engine.cancel()
            self._chat_id = -1

    def shutdown(self, timeout_ms: int = 5000) -> None:
        self.engine.cancel()
        self._load_id = self._chat_id = -1
        self._request_shutdown.emit()
        self._thread.quit()
        if not self._thread.wait(timeout_ms):
            log.warning("the engine thread did not stop in time")

    # -- answers, filtered by request id --------------------------------------------------------------

    @Slot(int, object)
    def _on_loaded(self, request_id: int, info: ModelInfo) -> None:
        if request_id == self._load_id:
            self._load_id = -1
            self._progress_timer.stop()
            self.model = info
            self.model_loaded.emit(info)

    @Slot(int, str)
    def _on_token(self, request_id: int, text: str) -> None:
        if request_id == self._chat_id:
            self.token.emit(text)

    @Slot(int, object)
    def _on_finished(self, request_id: int, stats: ReplyStats) -> None:
        if request_id == self._chat_id:
            self._chat_id = -1
            self.reply_finished.emit(stats)

    @Slot(int, str)
    def _on_failed(self, request_id: int, message: str) -> None:
        if request_id == self._load_id:
            self._load_id = -1
            self._progress_timer.stop()
            self.model = self.engine.model
            self.load_failed.emit(message)
        elif request_id == self._chat_id:
            self._chat_id = -1
            self.reply_failed.emit(message)


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
