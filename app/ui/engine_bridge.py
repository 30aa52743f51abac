"""The window's client of the engine service, turned into Qt signals on the GUI thread.

The engine service (``app.core.llm.service``) answers on its own thread through plain callbacks. Here each
callback emits a private signal carrying the request's id; Qt queues it to the GUI thread, where answers to a
request that is no longer current (a reply the person walked away from, a load they replaced) are dropped, so
the window never sees a stale token. The window's requests go ahead of those of other clients.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app.core.llm.context import ChatMessage
from app.core.llm.engine import ModelInfo, ReplyStats
from app.core.llm.load_options import LoadOptions
from app.core.llm.protocol import ChatEngine
from app.core.llm.remote_info import RemoteModelInfo
from app.core.llm.service import (
    EngineService,
    Job,
    JobCallbacks,
    LoadCallbacks,
    LoadFailure,
    ReplyCallbacks,
    Ticket,
)
from app.core.modes import SamplingOptions
from app.ui.background import keep_until_deleted

log = logging.getLogger(__name__)

T = TypeVar("T")

LOAD_PROGRESS_INTERVAL_MS = 50
# The window's engine runs a little below the GUI thread's priority: llama.cpp's threads take every core while a
# reply is written, and the GUI thread, needing a few milliseconds per frame, would wait for one of them to lose
# its turn. Below the GUI, above background work (app.core.priority: indexing, reading documents) so a reply in
# progress goes first; nobody else wants the cores on an idle computer, so the reply is as fast.
ENGINE_NICENESS_IN_WINDOW = int(os.environ.get("LLAMADESK_ENGINE_NICENESS", "4"))


class EngineBridge(QObject):
    """The GUI thread's handle on the engine service. Its signals are for the current request only.

    Signals:
        load_progress(float): 0..1 while a model loads.
        model_loaded(ModelInfo): the model now loaded.
        load_failed(str): a sentence; empty when the person cancelled.
        template_refused(str, str): the model file and the sentence, when its chat template was refused.
        token(str): a piece of the reply being written.
        prompt_progress(int, int): prompt tokens evaluated so far and in all, before the reply's first token.
        reply_finished(ReplyStats): the finished (or stopped) reply's statistics.
        reply_failed(str): a sentence.
        load_started(str): the window asked for a model (its path); other clients' replies may be stopped.
        engine_switched(object): another engine is in the service's place: its model (a server's ModelInfo), or
            None (this computer's, which loads one next).
    """

    load_progress = Signal(float)
    model_loaded = Signal(ModelInfo)
    load_failed = Signal(str)
    template_refused = Signal(str, str)
    token = Signal(str)
    prompt_progress = Signal(int, int)
    reply_finished = Signal(ReplyStats)
    reply_failed = Signal(str)
    load_started = Signal(str)
    engine_switched = Signal(object)

    # Emitted on the engine thread, so every connection is queued to this object's (the GUI) thread.
    _loaded = Signal(int, ModelInfo)
    _load_failed = Signal(int, LoadFailure)
    _token = Signal(int, str)
    _prompt_progress = Signal(int, int, int)
    _finished = Signal(int, ReplyStats)
    _failed = Signal(int, str)
    _job_done = Signal(int, object)
    _job_failed = Signal(int, str)

    def __init__(self, service: EngineService | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service or EngineService(niceness=ENGINE_NICENESS_IN_WINDOW)
        self._client = self.service.client("window", priority=True)
        self._loaded.connect(self._on_loaded)
        self._load_failed.connect(self._on_load_failed)
        self._token.connect(self._on_token)
        self._prompt_progress.connect(self._on_prompt_progress)
        self._finished.connect(self._on_finished)
        self._failed.connect(self._on_failed)
        self._job_done.connect(self._on_job_done)
        self._job_failed.connect(self._on_job_failed)
        self._progress_timer = QTimer(self)
        self._progress_timer.setInterval(LOAD_PROGRESS_INTERVAL_MS)
        self._progress_timer.timeout.connect(lambda: self.load_progress.emit(self.service.load_fraction))
        self._last_id = 0
        self._load_path = ""
        self._load: tuple[int, Ticket] | None = None  # (request id, ticket) of the current load
        self._reply: tuple[int, Ticket] | None = None
        self._jobs: dict[int, tuple[list[Ticket], Callable[[Any], None], Callable[[str], None]]] = {}
        self.model: ModelInfo | None = self.service.model

    # -- state ---------------------------------------------------------------------------------------------

    @property
    def is_loading(self) -> bool:
        return self._load is not None

    @property
    def is_generating(self) -> bool:
        return self._reply is not None

    @property
    def is_busy(self) -> bool:
        return self._load is not None or self._reply is not None or bool(self._jobs)

    @property
    def remote(self) -> bool:
        """Whether a server's model answers (Settings → Engine), not one loaded on this computer: a server's
        engine has its model from connecting until it is replaced, so the model says which engine is in place."""
        return isinstance(self.model, RemoteModelInfo)

    # -- requests ------------------------------------------------------------------------------------------

    def _new_id(self) -> int:
        """Ids are the bridge's own, known before the request is queued: its first answer may come at once."""
        self._last_id += 1
        return self._last_id

    def load(self, path: str, options: LoadOptions) -> None:
        self.stop()
        self._progress_timer.start()
        request_id = self._new_id()
        callbacks = LoadCallbacks(
            loaded=lambda info: self._loaded.emit(request_id, info),
            failed=lambda failure: self._load_failed.emit(request_id, failure),
        )
        self._load = (request_id, self._client.load(path, options, callbacks))
        self._load_path = path
        self.load_started.emit(path)

    def chat(
        self, messages: list[ChatMessage], sampling: SamplingOptions, state_key: str | None = None
    ) -> None:
        """``state_key``: the conversation whose saved state may serve the prompt (see ``Engine.chat``)."""
        request_id = self._new_id()
        callbacks = ReplyCallbacks(
            token=lambda text: self._token.emit(request_id, text),
            finished=lambda stats: self._finished.emit(request_id, stats),
            failed=lambda message: self._failed.emit(request_id, message),
            prompt_progress=lambda done, total: self._prompt_progress.emit(request_id, done, total),
        )
        self._reply = (request_id, self._client.chat(messages, sampling, callbacks, state_key))

    def run_job(self, job: Job[T], on_done: Callable[[T], None], on_failed: Callable[[str], None]) -> Ticket:
        """Run ``job`` on the engine thread; ``on_done(result)`` or ``on_failed(sentence)`` on the GUI thread
        ("" when stopped). The returned ticket cancels it."""
        request_id = self._new_id()
        callbacks = JobCallbacks[T](
            done=lambda result: self._job_done.emit(request_id, result),
            failed=lambda message: self._job_failed.emit(request_id, message),
        )
        # Registered before it is queued, so an answer cannot arrive for a job the bridge does not know yet.
        pending: list[Ticket] = []
        self._jobs[request_id] = (pending, on_done, on_failed)
        ticket = self._client.run_job(job, callbacks)
        pending.append(ticket)
        return ticket

    def switch_engine(
        self,
        engine: ChatEngine,
        prepare: Job[ModelInfo | None] | None,
        on_done: Callable[[ModelInfo | None], None],
        on_failed: Callable[[str], None],
    ) -> Ticket:
        """Put ``engine`` (this computer's or a server's) in the service's place after the work under way, once
        ``prepare`` (connecting) succeeded; else the engine in place stays. A server's model is announced with
        ``model_loaded``, as a loaded file's is; ``on_done``/``on_failed`` run on the GUI thread after it."""

        def done(info: ModelInfo | None) -> None:
            self.model = info
            if info is not None:
                self.model_loaded.emit(info)
            self.engine_switched.emit(info)
            on_done(info)

        request_id = self._new_id()
        callbacks = JobCallbacks[ModelInfo | None](
            done=lambda result: self._job_done.emit(request_id, result),
            failed=lambda message: self._job_failed.emit(request_id, message),
        )
        pending: list[Ticket] = []  # registered before it is queued, as run_job's are
        self._jobs[request_id] = (pending, done, on_failed)
        ticket = self._client.switch_engine(engine, callbacks, prepare)
        pending.append(ticket)
        return ticket

    def stop(self) -> None:
        """Stop the load, reply and jobs in progress or queued. Returns at once; each ends as cancelled."""
        tickets = [request[1] for request in (self._load, self._reply) if request is not None]
        tickets += [ticket for job in self._jobs.values() for ticket in job[0]]
        for ticket in tickets:
            ticket.cancel()

    def abandon_reply(self) -> None:
        """Stop the reply and forget it: its remaining tokens and its end are dropped, not delivered."""
        if self._reply is not None:
            self._reply[1].cancel()
            self._reply = None

    def shutdown(self, timeout_s: float = 10.0) -> None:
        self._load = self._reply = None
        self._jobs.clear()
        self._progress_timer.stop()
        if not self.service.shutdown(timeout_s):
            # The engine thread's callbacks hold this bridge; were it to drop the last reference, Qt objects
            # would be deleted on that thread. Kept instead until the process ends.
            keep_until_deleted(self)

    # -- answers, filtered by request id -------------------------------------------------------------------

    @Slot(int, ModelInfo)
    def _on_loaded(self, request_id: int, info: ModelInfo) -> None:
        if self._load is not None and request_id == self._load[0]:
            self._load = None
            self._progress_timer.stop()
            self.model = info
            self.model_loaded.emit(info)

    @Slot(int, LoadFailure)
    def _on_load_failed(self, request_id: int, failure: LoadFailure) -> None:
        if self._load is not None and request_id == self._load[0]:
            self._load = None
            self._progress_timer.stop()
            self.model = failure.still_loaded
            self.load_failed.emit(failure.message)
            if failure.template_refused:
                self.template_refused.emit(self._load_path, failure.message)

    @Slot(int, int, int)
    def _on_prompt_progress(self, request_id: int, done: int, total: int) -> None:
        if self._reply is not None and request_id == self._reply[0]:
            self.prompt_progress.emit(done, total)

    @Slot(int, str)
    def _on_token(self, request_id: int, text: str) -> None:
        if self._reply is not None and request_id == self._reply[0]:
            self.token.emit(text)

    @Slot(int, ReplyStats)
    def _on_finished(self, request_id: int, stats: ReplyStats) -> None:
        if self._reply is not None and request_id == self._reply[0]:
            self._reply = None
            self.reply_finished.emit(stats)

    @Slot(int, str)
    def _on_failed(self, request_id: int, message: str) -> None:
        if self._reply is not None and request_id == self._reply[0]:
            self._reply = None
            self.reply_failed.emit(message)

    @Slot(int, object)
    def _on_job_done(self, request_id: int, result: object) -> None:
        job = self._jobs.pop(request_id, None)
        if job is not None:
            job[1](result)

    @Slot(int, str)
    def _on_job_failed(self, request_id: int, message: str) -> None:
        job = self._jobs.pop(request_id, None)
        if job is not None:
            job[2](message)
