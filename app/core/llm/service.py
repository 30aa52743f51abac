"""The engine service: one thread owns the engine (a ``ChatEngine``: this computer's, with its one ``Llama``, or
a server's) and serves requests in order.

Every front end talks to the model through here: the window (through a thin Qt adapter), the terminal, and any
other client. A request is a chat reply, a model load or a job (a document summary); each carries its own cancel
event, so a stop reaches a request still waiting in the queue, and stopping the running one never waits behind
it (``Ticket.cancel()`` only sets events that the engine checks between tokens and inside llama.cpp).

Requests run one at a time in arrival order, except that a client opened with ``priority=True`` (the window: a
person is waiting at it) goes ahead of requests queued by other clients.

A model loaded with ``LoadOptions.parallel`` > 1 answers several chat and completion requests at once: other
clients' join the batched loop (``app.core.llm.batched``) and the engine thread alternates between taking queued
requests and running one batched step; a priority client's chat joins a batch under way, its prompt evaluated
first. What the loop does not take (a load, a job, ``echo`` or ``suffix``) waits for the batch to drain, then runs
alone in its turn; requests behind it wait too, so none is passed over for good.

Answers are delivered through the callbacks given with each request, on the engine thread, so each client sees
only its own answers; a client that needs them on another thread (Qt's GUI thread, a terminal's main thread) hands
them over itself, e.g. with a queued signal or with ``Ticket.stream()``.
"""

from __future__ import annotations

import collections
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from app.core.errors import Cancelled, ContextLimitError, ModelChangedError, UserError
from app.core.llm.activity import EngineActivity
from app.core.llm.batched import BatchedDecoder, SequenceListener, chat_prompt, completion_prompt
from app.core.llm.context import ChatMessage, Prompt
from app.core.llm.engine import Engine, ModelInfo, Reply, ReplyStats
from app.core.llm.load_options import LoadOptions
from app.core.llm.protocol import ChatEngine, local_engine
from app.core.llm.sampling import ReplyOptions, TokenLogprob
from app.core.llm.templates import ChatTemplateError
from app.core.modes import SamplingOptions
from app.core.priority import lower_this_thread

log = logging.getLogger(__name__)

T = TypeVar("T")

# A job runs on the engine thread with the engine and its request's cancel event.
Job = Callable[[ChatEngine, threading.Event], T]


@dataclass(frozen=True)
class ReplyCallbacks:
    token: Callable[[str], None]
    finished: Callable[[ReplyStats], None]
    failed: Callable[[str], None]  # a sentence
    prompt_progress: Callable[[int, int], None] | None = None  # (done, total) prompt tokens evaluated
    # The prompt was accepted and the reply begins: its ``logprobs`` grow as it is written. Before any token.
    started: Callable[[Reply], None] | None = None
    # Called instead of ``failed`` when set, with the error itself (the API answers each kind its own way).
    refused: Callable[[UserError], None] | None = None


# Starts a reply on the engine thread: (engine, cancel, prompt progress) -> the reply to stream.
ReplyStart = Callable[[ChatEngine, threading.Event, Callable[[int, int], None] | None], Reply]


@dataclass(frozen=True)
class LoadFailure:
    message: str  # a sentence; "" when the load was stopped
    still_loaded: ModelInfo | None  # the model loaded now: the previous one, kept or loaded again, or None
    template_refused: bool = False  # the model's chat template was refused: a built-in one may be chosen


@dataclass(frozen=True)
class LoadCallbacks:
    loaded: Callable[[ModelInfo], None]
    failed: Callable[[LoadFailure], None]


@dataclass(frozen=True)
class JobCallbacks(Generic[T]):
    done: Callable[[T], None]
    failed: Callable[[str], None]  # a sentence; "" when stopped


@dataclass(eq=False)
class Ticket:
    """One request: its id, its client, and its cancel."""

    id: int
    client: str
    priority: bool
    _stop_running: Callable[[Ticket], None] = field(repr=False)
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Stop this request, queued or running. Safe from any thread; returns at once."""
        self.cancelled.set()
        self._stop_running(self)

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


# Joins a reply to the batched loop instead of running it alone: (decoder, cancel, done) -> False when it must
# run alone after all (its prompt does not fit one sequence's share, and the window would cut it instead); ``done``
# is called once it is answered.
Join = Callable[[BatchedDecoder, threading.Event, Callable[[], None]], bool]


@dataclass(eq=False)
class _Request:
    ticket: Ticket
    run: Callable[[ChatEngine, threading.Event], None]
    join: Join | None = None  # None: never batched
    alone: bool = False  # the batched loop declined it: it runs alone once the batch drains


# What the engine thread does next, besides a request: one step of the batched loop.
_STEP = object()


class EngineService:
    """Owns the engine thread. See the module docstring."""

    def __init__(self, engine: ChatEngine | None = None, *, niceness: int = 0) -> None:
        # Touched only by the engine thread, apart from cancel().
        self._engine: ChatEngine = engine or Engine()
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._urgent: collections.deque[_Request] = collections.deque()
        self._normal: collections.deque[_Request] = collections.deque()
        self._running: Ticket | None = None
        self._closing = False
        # The batched loop, made for the loaded model on first use.
        self._decoder: BatchedDecoder | None = None
        self._batched: set[Ticket] = set()  # requests in the batched loop (or joining it)
        # What the engine is doing, for work that should wait while it answers (a library being indexed).
        self.activity = EngineActivity()
        self._batch_marked = False  # the batch under way is counted in the activity
        self._niceness = niceness  # the engine thread's, and so llama.cpp's threads' (they inherit it)
        self._thread = threading.Thread(target=self._serve, name="engine", daemon=True)
        self._thread.start()

    # -- clients -----------------------------------------------------------------------------------------

    def client(self, name: str, *, priority: bool = False) -> EngineClient:
        return EngineClient(self, name, priority)

    @property
    def model(self) -> ModelInfo | None:
        """The model loaded now: a reference the engine thread replaces whole, so readable from anywhere."""
        return self._engine.model

    def replace_engine(self, engine: ChatEngine) -> None:
        """Put ``engine`` in the place of the one owned now (a local engine and a remote one take turns), and
        unload the old one. Engine thread only: ``EngineClient.switch_engine`` runs it there."""
        # Under the lock: a cancel arriving meanwhile reaches one engine or the other, never a half-swapped one.
        with self._lock:
            old, self._engine = self._engine, engine
        if old is not engine:
            old.unload()

    def reset_load_progress(self) -> None:
        """A load was asked for: its progress starts at 0, not at the end of the previous load."""
        self._engine.load_fraction = 0.0

    @property
    def load_fraction(self) -> float:
        """Progress of the load under way (0..1); a float written by the engine thread."""
        return self._engine.load_fraction

    # -- the queue ---------------------------------------------------------------------------------------

    def submit(
        self,
        client: EngineClient,
        run: Callable[[ChatEngine, threading.Event], None],
        join: Join | None = None,
    ) -> Ticket:
        """Queue ``run(engine, cancel)`` for the engine thread for ``client``; ``join``: how it joins the batch."""
        ticket = Ticket(next(self._ids), client.name, client.priority, self._cancel_if_running)
        with self._lock:
            if self._closing:
                raise UserError("The model is shutting down; try again after restarting.")
            (self._urgent if client.priority else self._normal).append(_Request(ticket, run, join))
            if client.priority and join is not None and self._decoder is not None:
                self._decoder.make_way()  # the step under way stops, so the person's prompt goes next
            self._lock.notify()
        return ticket

    def _next(self) -> tuple[_Request, bool] | object | None:
        """The next request and whether it joins the batched loop; ``_STEP`` for a batched step; None to end."""
        with self._lock:
            while True:
                batch = self._decoder if self._decoder is not None and self._decoder.active else None
                queue_ = self._urgent or self._normal
                if not queue_:
                    if batch is not None:
                        return _STEP
                    if self._closing:
                        return None
                    self._lock.wait()
                    continue
                head = queue_[0]
                joinable = head.join is not None and not head.alone and self._batching()
                if batch is not None:
                    if not (joinable and batch.has_room):
                        return _STEP  # it waits for a free sequence, or for the batch to drain
                    queue_.popleft()
                    self._batched.add(head.ticket)
                    return head, True
                queue_.popleft()
                if joinable and not head.ticket.priority:  # the window's own starts no batch: it runs alone
                    self._batched.add(head.ticket)
                    return head, True
                self._running = head.ticket
                return head, False

    def _batching(self) -> bool:
        """The model answers several requests at once (engine thread only)."""
        engine = self._engine
        return (
            isinstance(engine, Engine)
            and engine.is_loaded
            and engine.load_options is not None
            and engine.load_options.parallel > 1
        )

    def _cancel_if_running(self, ticket: Ticket) -> None:
        # Under the lock: the engine must not move on to the next request between the check and the cancel,
        # or the cancel would stop another client's request.
        with self._lock:
            if self._running is ticket:
                self._engine.cancel()

    def _serve(self) -> None:
        if self._niceness:
            lower_this_thread(self._niceness)
        while True:
            work = self._next()
            if work is None:
                break
            if work is _STEP:
                self._step_batch()
                self._mark_batch()
                continue
            assert isinstance(work, tuple)
            request, joining = work
            if joining:
                self._join_batch(request)
                self._mark_batch()
                continue
            if self._decoder is not None:
                self._decoder.yield_cache()  # the engine's own path runs: only sequence 0's cells are its
            try:
                with self.activity.working():
                    request.run(self._engine, request.ticket.cancelled)
            except Exception:  # never let the engine thread die: every client depends on it
                log.exception("engine request %s failed", request.ticket.id)
            finally:
                with self._lock:
                    self._running = None
                    idle = not (self._urgent or self._normal)
                request.ticket.done.set()
            if idle:
                self._save_conversation_state()
        if self._decoder is not None:
            self._decoder.close()
        self._mark_batch()
        self._engine.unload()

    def _mark_batch(self) -> None:
        """Engine thread: the activity counts a batch with sequences in it as one request at work, from its
        first sequence to its last (not step by step, or background work would slip in between steps)."""
        active = self._decoder is not None and self._decoder.active
        if active != self._batch_marked:
            self._batch_marked = active
            (self.activity.begin if active else self.activity.end)()

    def _join_batch(self, request: _Request) -> None:
        """Engine thread: start ``request`` in the batched loop; one it declines goes back to the head of its
        queue, to run alone once the batch drains."""
        assert request.join is not None
        ticket = request.ticket
        engine = local_engine(self._engine)
        options = engine.load_options
        assert options is not None
        if self._decoder is None or self._decoder.llama is not engine.llama:
            if self._decoder is not None:
                self._decoder.close()
            self._decoder = BatchedDecoder(engine, options.parallel)

        def done() -> None:
            with self._lock:
                self._batched.discard(ticket)
            ticket.done.set()

        try:
            joined = request.join(self._decoder, ticket.cancelled, done)
        except Exception:  # never let the engine thread die
            log.exception("engine request %s could not join the batch", ticket.id)
            joined = True
            done()
        if not joined:
            with self._lock:
                self._batched.discard(ticket)
                request.alone = True
                (self._urgent if ticket.priority else self._normal).appendleft(request)

    def _step_batch(self) -> None:
        """Engine thread: one step of the batched loop; a failure ends the batch, never the thread."""
        decoder = self._decoder
        assert decoder is not None
        try:
            decoder.step()
        except Exception:
            log.exception("a step of the batched loop failed")
            decoder.close()
            self._decoder = None

    def _save_conversation_state(self) -> None:
        """Nothing waits: the engine copies the state of the conversation it just answered (a request arriving
        meanwhile waits for that memory copy only; the file is written on another thread)."""
        try:
            self._engine.idle()
        except Exception:
            log.exception("saving the saved state failed")

    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """Stop everything queued and running, unload the model and end the thread; False if the thread was
        still running ``timeout_s`` later."""
        with self._lock:
            self._closing = True
            dropped = [*self._urgent, *self._normal]
            self._urgent.clear()
            self._normal.clear()
            running = self._running
            batched = list(self._batched)
            self._lock.notify()
        for ticket in batched:
            ticket.cancelled.set()  # the batched loop ends them at its next step
        for request in dropped:
            request.ticket.cancelled.set()
            request.ticket.done.set()
        if running is not None:
            running.cancel()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("the engine thread did not stop in time")
            return False
        return True


class EngineClient:
    """One front end's handle on the service: its requests share its name and priority."""

    def __init__(self, service: EngineService, name: str, priority: bool) -> None:
        self.service = service
        self.name = name
        self.priority = priority

    @property
    def model(self) -> ModelInfo | None:
        return self.service.model

    def load(self, path: str, options: LoadOptions, answer: LoadCallbacks) -> Ticket:
        self.service.reset_load_progress()
        return self.service.submit(
            self, lambda engine, cancel: _serve_load(engine, cancel, path, options, answer)
        )

    def chat(
        self,
        messages: list[ChatMessage],
        sampling: SamplingOptions,
        answer: ReplyCallbacks,
        state_key: str | None = None,
        options: ReplyOptions | None = None,
        expected_model: ModelInfo | None = None,
    ) -> Ticket:
        """``state_key``: the conversation whose saved state may serve the prompt (see ``Engine.chat``).
        ``expected_model``: the model the request was accepted for; if another one answers when its turn comes
        (the engine was switched meanwhile), it is refused with ModelChangedError instead of run there."""
        snapshot = list(messages)

        def start(
            engine: ChatEngine, cancel: threading.Event, progress: Callable[[int, int], None] | None
        ) -> Reply:
            return engine.chat(
                snapshot,
                sampling,
                cancel=cancel,
                state_key=state_key,
                prompt_progress=progress,
                options=options,
            )

        reply_options = options or ReplyOptions()

        def join(decoder: BatchedDecoder, cancel: threading.Event, done: Callable[[], None]) -> bool:
            return _join_reply(
                decoder,
                cancel,
                done,
                lambda: chat_prompt(decoder.engine, snapshot, sampling, reply_options, decoder.slot),
                sampling,
                reply_options,
                answer,
                expected_model,
                priority=self.priority,
                state_key=state_key,
            )

        return self.service.submit(
            self, lambda engine, cancel: _serve_reply(engine, cancel, start, answer, expected_model), join
        )

    def complete(
        self,
        prompt: str | list[int],
        sampling: SamplingOptions,
        answer: ReplyCallbacks,
        options: ReplyOptions | None = None,
        *,
        echo: bool = False,
        suffix: str | None = None,
        expected_model: ModelInfo | None = None,
    ) -> Ticket:
        """A raw completion of ``prompt`` by this computer's model (``Engine.complete``), queued like a chat."""

        def start(
            engine: ChatEngine, cancel: threading.Event, _progress: Callable[[int, int], None] | None
        ) -> Reply:
            return local_engine(engine).complete(prompt, sampling, cancel, options, echo=echo, suffix=suffix)

        reply_options = options or ReplyOptions()

        def join(decoder: BatchedDecoder, cancel: threading.Event, done: Callable[[], None]) -> bool:
            return _join_reply(
                decoder,
                cancel,
                done,
                lambda: completion_prompt(decoder.engine, prompt, sampling, reply_options, decoder.slot),
                sampling,
                reply_options,
                answer,
                expected_model,
                priority=self.priority,
            )

        # An echo or a fill-in-the-middle runs on the engine's own path, which builds them.
        batchable = not echo and suffix is None
        return self.service.submit(
            self,
            lambda engine, cancel: _serve_reply(engine, cancel, start, answer, expected_model),
            join if batchable else None,
        )

    def run_job(self, job: Job[T], answer: JobCallbacks[T]) -> Ticket:
        return self.service.submit(self, lambda engine, cancel: _serve_job(engine, cancel, job, answer))

    def stream_chat(
        self,
        messages: list[ChatMessage],
        sampling: SamplingOptions,
        state_key: str | None = None,
        options: ReplyOptions | None = None,
        expected_model: ModelInfo | None = None,
    ) -> StreamedReply:
        """A reply to iterate on the calling thread (a terminal, a server's request thread)."""
        return StreamedReply(
            lambda answer: self.chat(messages, sampling, answer, state_key, options, expected_model)
        )

    def stream_completion(
        self,
        prompt: str | list[int],
        sampling: SamplingOptions,
        options: ReplyOptions | None = None,
        *,
        echo: bool = False,
        suffix: str | None = None,
        expected_model: ModelInfo | None = None,
    ) -> StreamedReply:
        """A raw completion to iterate on the calling thread (``complete``)."""
        return StreamedReply(
            lambda answer: self.complete(
                prompt, sampling, answer, options, echo=echo, suffix=suffix, expected_model=expected_model
            )
        )

    def load_and_wait(self, path: str, options: LoadOptions) -> ModelInfo:
        """Load on the engine thread and wait; raises UserError with the sentence, or Cancelled."""
        outcome: list[ModelInfo | str] = []
        ticket = self.load(
            path,
            options,
            LoadCallbacks(loaded=outcome.append, failed=lambda failure: outcome.append(failure.message)),
        )
        _wait_interruptibly(ticket)
        result = outcome[0] if outcome else ""
        if isinstance(result, ModelInfo):
            return result
        if not result:
            raise Cancelled()
        raise UserError(result)

    def switch_engine(
        self,
        engine: ChatEngine,
        answer: JobCallbacks[ModelInfo | None],
        prepare: Job[ModelInfo | None] | None = None,
    ) -> Ticket:
        """Make ``engine`` the service's engine, in its turn on the engine thread. ``prepare(engine, cancel)``
        runs first (connecting to a server); if it fails, the engine in place stays, with its model. ``done``
        gets the new engine's model (None for a fresh local engine, which then loads one)."""

        def swap(_current: ChatEngine, cancel: threading.Event) -> ModelInfo | None:
            info = prepare(engine, cancel) if prepare is not None else engine.model
            if cancel.is_set():  # stopped while connecting: the engine in place stays
                engine.unload()
                raise Cancelled()
            self.service.replace_engine(engine)
            return info

        return self.run_job(swap, answer)

    def start_job(self, job: Job[T]) -> PendingJob[T]:
        """Run ``job`` on the engine thread; its ``result()`` waits for it on the calling thread."""
        return PendingJob(self, job)


# -- the three kinds of request, run on the engine thread ------------------------------------------------------


def _serve_load(
    engine: ChatEngine, cancel: threading.Event, path: str, options: LoadOptions, answer: LoadCallbacks
) -> None:
    if cancel.is_set():  # stopped or replaced while it waited its turn: the model loaded now stays
        answer.failed(LoadFailure("", engine.model))
        return
    engine.load_fraction = 0.0
    template_refused = False
    try:
        # No progress callback: it would run inside llama.cpp's C callback; clients poll
        # ``load_fraction`` instead, which is only a float written from there.
        info = engine.load(path, options, cancel=cancel)
    except Cancelled:
        message = ""
    except ChatTemplateError as exc:
        message, template_refused = str(exc), True
    except UserError as exc:
        message = str(exc)
    except Exception as exc:  # a bug, but every client must live on
        log.exception("loading %s failed", path)
        message = f"Loading the model failed unexpectedly ({exc}). See the log for details."
    else:
        answer.loaded(info)
        return
    answer.failed(LoadFailure(message, engine.model, template_refused))


def _serve_reply(
    engine: ChatEngine,
    cancel: threading.Event,
    start: ReplyStart,
    answer: ReplyCallbacks,
    expected_model: ModelInfo | None = None,
) -> None:
    try:
        _check_model(engine, expected_model)
        reply = start(engine, cancel, answer.prompt_progress)
        if answer.started is not None:
            answer.started(reply)
        for piece in reply:
            answer.token(piece)
    except UserError as exc:
        if answer.refused is not None:
            answer.refused(exc)
        else:
            answer.failed(str(exc))
    except Exception as exc:
        log.exception("generating a reply failed")
        answer.failed(f"The reply failed unexpectedly ({exc}). Try again, or reload the model.")
    else:
        answer.finished(reply.stats)


def _check_model(engine: ChatEngine, expected_model: ModelInfo | None) -> None:
    if expected_model is not None and engine.model is not expected_model:
        raise ModelChangedError(
            "LlamaDesk switched to another model while this request waited, so it was not run; send it again."
        )


def _join_reply(
    decoder: BatchedDecoder,
    cancel: threading.Event,
    done: Callable[[], None],
    make_prompt: Callable[[], Prompt],
    sampling: SamplingOptions,
    options: ReplyOptions,
    answer: ReplyCallbacks,
    expected_model: ModelInfo | None,
    *,
    priority: bool,
    state_key: str | None = None,
) -> bool:
    """Start a reply in the batched loop, answered as ``_serve_reply`` answers one; False when a conversation
    (the window's, whose history is cut to fit) is longer than one sequence's share and must run alone."""
    requested = time.perf_counter()

    def refuse(error: Exception) -> None:
        if isinstance(error, UserError) and answer.refused is not None:
            answer.refused(error)
        else:
            unexpected = f"The reply failed unexpectedly ({error}). Try again, or reload the model."
            answer.failed(str(error) if isinstance(error, UserError) else unexpected)
        done()

    def finish(stats: ReplyStats) -> None:
        answer.finished(stats)
        done()

    if cancel.is_set():  # stopped while it waited its turn: an empty, stopped reply
        stopped = ReplyStats(finish_reason="cancelled", context_size=decoder.slot)
        if answer.started is not None:
            answer.started(Reply(iter(()), stopped))
        finish(stopped)
        return True
    try:
        _check_model(decoder.engine, expected_model)
        prompt = make_prompt()
        listener = SequenceListener(
            started=answer.started or (lambda _reply: None),
            text=answer.token,
            finished=finish,
            failed=refuse,
            prompt_progress=answer.prompt_progress,
        )
        decoder.join(
            prompt,
            sampling,
            options,
            cancel,
            listener,
            priority=priority,
            requested=requested,
            state_key=state_key,
        )
    except ContextLimitError as exc:
        if priority and options.cut_history:
            return False
        refuse(exc)
    except Cancelled:  # stopped while the template rendered
        finish(ReplyStats(finish_reason="cancelled", context_size=decoder.slot))
    except UserError as exc:
        refuse(exc)
    except Exception as exc:
        log.exception("starting a batched reply failed")
        refuse(exc)
    return True


def _serve_job(engine: ChatEngine, cancel: threading.Event, job: Job[T], answer: JobCallbacks[T]) -> None:
    if cancel.is_set():  # stopped while it waited its turn
        answer.failed("")
        return
    try:
        result = job(engine, cancel)
    except Cancelled:
        answer.failed("")
    except UserError as exc:
        answer.failed(str(exc))
    except Exception as exc:
        log.exception("an engine job failed")
        answer.failed(f"The work failed unexpectedly ({exc}). Try again.")
    else:
        answer.done(result)


class PendingJob(Generic[T]):
    """A job whose answer a thread waits for (a terminal); ``cancel()`` is safe from anywhere."""

    def __init__(self, client: EngineClient, job: Job[T]) -> None:
        self._results: list[T] = []
        self._failures: list[str] = []
        self.ticket = client.run_job(
            job, JobCallbacks(done=self._results.append, failed=self._failures.append)
        )

    def cancel(self) -> None:
        self.ticket.cancel()

    def result(self) -> T:
        """The job's result; raises UserError with its sentence, or Cancelled if it was stopped first."""
        _wait_interruptibly(self.ticket)
        if self._results:
            return self._results[0]
        if self._failures and self._failures[0]:
            raise UserError(self._failures[0])
        raise Cancelled()


class StreamedReply:
    """Iterate for the reply's text on the calling thread; ``stats`` is set once iteration ends.

    Raises UserError (the engine's own kind, with its sentence) from the iteration if the reply fails.
    ``wait_started()`` waits until the prompt is accepted or refused, before any text. ``cancel()`` may be called
    from any thread, a signal handler included.
    """

    _END = object()

    def __init__(self, submit: Callable[[ReplyCallbacks], Ticket]) -> None:
        self._pieces: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.stats: ReplyStats | None = None
        self.text = ""
        self._error: UserError | None = None
        self._reply: Reply | None = None
        self._started = threading.Event()
        self.ticket = submit(
            ReplyCallbacks(
                token=self._pieces.put,
                finished=self._finish,
                failed=lambda message: self._fail(UserError(message)),
                started=self._start,
                refused=self._fail,
            )
        )

    @property
    def logprobs(self) -> list[TokenLogprob]:
        """One entry per token generated so far, when the request asked for them (appended on the engine thread
        before the text holding the token is handed over)."""
        return self._reply.logprobs if self._reply is not None else []

    def _start(self, reply: Reply) -> None:
        self._reply = reply
        self._started.set()

    def _finish(self, stats: ReplyStats) -> None:
        self.stats = stats
        self._started.set()
        self._pieces.put(self._END)

    def _fail(self, error: UserError) -> None:
        self._error = error if str(error) else UserError("The reply was stopped.")
        self._started.set()
        self._pieces.put(self._END)

    def wait_started(self) -> None:
        """Block until the engine took the prompt (or refused it: then raise its error). Done or dropped
        requests return too."""
        while not self._started.wait(0.1):
            if self.ticket.done.is_set():
                break
        if self._error is not None and self._reply is None:
            raise self._error

    def cancel(self) -> None:
        self.ticket.cancel()

    def __iter__(self) -> Iterator[str]:
        while True:
            try:
                # A timeout keeps the wait interruptible: Ctrl+C's handler runs between waits.
                piece = self._pieces.get(timeout=0.1)
            except queue.Empty:
                if self.ticket.done.is_set() and self._pieces.empty():
                    # Dropped unanswered (the service shut down before it ran).
                    self._error = self._error or UserError("The reply was stopped.")
                    break
                continue
            if piece is self._END:
                break
            assert isinstance(piece, str)
            self.text += piece
            yield piece
        if self._error is not None:
            raise self._error


def _wait_interruptibly(ticket: Ticket) -> None:
    """Wait in short steps so Ctrl+C can arrive; a KeyboardInterrupt cancels this request, waits for it to stop,
    and is raised again (a caller that does not own the service would otherwise leave it running)."""
    try:
        while not ticket.wait(0.1):
            pass
    except KeyboardInterrupt:
        ticket.cancel()
        ticket.wait(10)
        raise
