"""The ASGI app: OpenAI's chat completions, completions and models endpoints over an engine client, and /health.

Generation blocks (the engine's pieces arrive on a thread-safe queue), so it is read on worker threads and the
event loop stays free for other connections. Each request's reply is submitted to the engine queue on arrival;
the engine runs them one at a time, the window's own requests ahead of these. A client that goes away cancels its
reply: the worker's wait is abandoned at once and the engine stops at its next token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import TypeVar

import anyio
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app import APP_NAME
from app.core.errors import ContextLimitError, ModelChangedError, UserError
from app.core.llm.engine import FillInTheMiddleUnsupported, ModelInfo
from app.core.llm.remote_info import RemoteModelInfo
from app.core.llm.sampling import DraftMode, GrammarRefused
from app.core.llm.service import EngineClient
from app.core.serve.body import read_json_body
from app.core.serve.embeddings import EmbeddingWorker, embedding_inputs, embeddings_response
from app.core.serve.errors import ApiError
from app.core.serve.generation import Generation
from app.core.serve.guard import Guard
from app.core.serve.history import ServedReply
from app.core.serve.library_context import LibraryWorker, with_library_passages
from app.core.serve.requests import GenerationRequest, chat_request, completion_request
from app.core.serve.responses import ResponseShape

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_WAITING = 8  # requests waiting behind the running one; more get 429
SERVER_STOPPED = "The server stopped this reply: LlamaDesk stopped serving. Start it again, then ask again."


class ServeState:
    """The server's replies running or waiting. Request handlers admit them on the event loop while worker
    threads, the window and the runner stop them, so the list is read and changed only under its lock."""

    def __init__(self, client: EngineClient, on_served: Callable[[ServedReply], None] | None = None) -> None:
        self.client = client
        # Called with each chat reply once it ends (on a worker thread or the event loop), to keep it in the
        # history.
        self.on_served = on_served
        self._lock = threading.Lock()
        self._generations: list[Generation] = []
        # Prompt-lookup drafting forced for every request (``llamadesk serve --draft``); None: the engine's default.
        self.draft: DraftMode | None = None

    @property
    def generations(self) -> list[Generation]:
        """The replies admitted and not yet seen to end, as they stand now (a copy)."""
        with self._lock:
            return list(self._generations)

    def stop_all(self, reason: str = SERVER_STOPPED) -> int:
        """End every reply running or waiting (the model is about to change, or serving stops), telling each
        client ``reason``; returns how many there were."""
        with self._lock:
            live = [g for g in self._generations if not (g.finished or g.cancelled)]
        for generation in live:
            generation.stop(reason)
        return len(live)

    def served(self, generation: Generation, model: ModelInfo, *, chat: bool) -> None:
        """A reply ended: hand a chat one to ``on_served`` (once), unless nothing of it was written."""
        if self.on_served is None or not chat or generation.recorded:
            return
        generation.recorded = True
        if not generation.text_sent and not generation.ended:
            return
        try:
            self.on_served(
                ServedReply(
                    messages=generation.request.original_messages or generation.request.messages,
                    reply=generation.text_sent,
                    model=str(model.path),
                    complete=generation.ended and not generation.stop_reason,
                    stats=generation.stats,
                )
            )
        except Exception:  # keeping a copy must never cost the client its answer
            log.exception("recording a served reply failed")

    def admit(self, request: GenerationRequest, model: ModelInfo) -> Generation:
        """Queue a reply for ``model``, unless MAX_WAITING of ours already wait behind the running one (429)."""
        # Counted and queued in one step: two requests at once cannot both take the last place.
        with self._lock:
            self._generations = [g for g in self._generations if not (g.finished or g.cancelled)]
            if len(self._generations) > MAX_WAITING:
                raise ApiError(
                    429,
                    f"The server is busy: {len(self._generations) - 1} requests are already waiting for the "
                    "model. Try again when one has finished.",
                    "queue_full",
                )
            if self.draft is not None:
                request = replace(request, options=replace(request.options, draft=self.draft))
            generation = Generation(self.client, request, model)
            self._generations.append(generation)
            return generation


def create_app(
    client: EngineClient,
    *,
    bound_host: str = "127.0.0.1",
    api_key: str | None = None,
    allowed_origins: Sequence[str] = (),
    state: ServeState | None = None,
    embeddings: EmbeddingWorker | None = None,
    libraries: LibraryWorker | None = None,
) -> Guard:
    """The server's ASGI app over ``client`` (its requests queue behind priority ones); ``allowed_origins`` are
    the web apps that may call it from a browser; ``state`` lets the caller stop its replies and keep them;
    ``embeddings`` serves /v1/embeddings (without it, that endpoint says how to get one); ``libraries`` searches
    the libraries a chat request names."""
    state = state or ServeState(client)

    async def health(_request: Request) -> Response:
        model = client.model
        if isinstance(model, RemoteModelInfo):  # chat requests get 503 then: health says so, as a 503 too
            return JSONResponse(
                {
                    "status": "LlamaDesk is using a model on another machine, which it does not share",
                    "model": None,
                },
                status_code=503,
            )
        return JSONResponse(
            {"status": "ok" if model else "no model loaded", "model": model and model.display_name}
        )

    async def models(_request: Request) -> Response:
        model = _loaded_model(client)
        entry = {
            "id": model.display_name,
            "object": "model",
            "created": _created(model),
            "owned_by": APP_NAME.lower(),
            "max_model_len": model.context_size,  # vLLM's field: a client then knows the context it can use
        }
        return JSONResponse({"object": "list", "data": [entry]})

    async def chat_completions(request: Request) -> Response:
        model = _loaded_model(client)
        body = await read_json_body(request)
        # Off the event loop: a request's schemas become grammars, which may take a moment.
        parsed = await anyio.to_thread.run_sync(chat_request, body, model)
        if parsed.libraries:
            if libraries is None:
                raise ApiError(
                    501,
                    "This server does not search libraries; leave out 'libraries'.",
                    "not_supported",
                    "libraries",
                )
            parsed = await anyio.to_thread.run_sync(
                with_library_passages, parsed, libraries, model.context_size
            )
        return await _answer(request, state, model, parsed, chat=True)

    async def completions(request: Request) -> Response:
        model = _loaded_model(client)
        body = await read_json_body(request)
        parsed = await anyio.to_thread.run_sync(completion_request, body, model)
        return await _answer(request, state, model, parsed, chat=False)

    async def create_embeddings(request: Request) -> Response:
        if embeddings is None:
            raise ApiError(
                501,
                "This server has no embedding model. Start it with --embedding-model PATH (a GGUF embedding "
                "model), then try again.",
                "not_supported",
            )
        body = await read_json_body(request)
        texts, encoding = embedding_inputs(body, embeddings)
        embedded = await anyio.to_thread.run_sync(embeddings.embed, texts)
        return JSONResponse(embeddings_response(embedded, encoding, embeddings.name))

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", create_embeddings, methods=["POST"]),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )
    return Guard(app, bound_host=bound_host, api_key=api_key, allowed_origins=allowed_origins)


def _loaded_model(client: EngineClient) -> ModelInfo:
    model = client.model
    if model is None:
        raise ApiError(503, "No model is loaded. Load one in LlamaDesk, then try again.", "model_not_loaded")
    if isinstance(model, RemoteModelInfo):
        # The window talks to a server with the person's own key: lending that to any local process is not
        # what the switch promises ("the loaded model" of this computer).
        raise ApiError(
            503,
            "LlamaDesk is using a model on another machine, which it does not share. Switch LlamaDesk to a "
            "model on this computer (Settings, Engine), then try again.",
            "model_not_loaded",
        )
    return model


def _created(model: ModelInfo) -> int:
    try:
        return int(model.path.stat().st_mtime)
    except OSError:
        return int(time.time())


async def _answer(
    request: Request, state: ServeState, model: ModelInfo, parsed: GenerationRequest, *, chat: bool
) -> Response:
    generation = state.admit(parsed, model)
    shape = ResponseShape(model.display_name, parsed)
    try:
        # Streamed or not, nothing is sent before the engine took the prompt: a refusal (too long for the
        # context, the model switched meanwhile) is then an ordinary error response, not a broken stream.
        _, failure, gone = await _watched(request, generation, generation.wait_started)
        text = ""
        if not (failure or gone) and not parsed.stream:
            whole, failure, gone = await _watched(request, generation, generation.collect)
            text = whole or ""
    except BaseException:
        state.served(generation, model, chat=chat)
        generation.cancel()
        raise
    if failure or gone or not parsed.stream:
        state.served(generation, model, chat=chat)
        generation.cancel()  # a no-op once it ended; stops it if this request was abandoned
    if gone:
        return Response(status_code=499)  # nobody is there to read it
    if failure is not None:
        raise _failure(generation, failure)
    if parsed.stream:
        return _ReplyEvents(
            generation, _events(generation, shape), lambda: state.served(generation, model, chat=chat)
        )
    return JSONResponse(shape.whole(text, generation))


async def _watched(
    request: Request, generation: Generation, work: Callable[[], T]
) -> tuple[T | None, UserError | None, bool]:
    """``work()`` on a worker thread, abandoned at once if the client goes away: (its result, the UserError it
    raised, whether the client went away)."""
    result: T | None = None
    failure: UserError | None = None
    gone = anyio.Event()
    async with anyio.create_task_group() as watchers:
        watchers.start_soon(_cancel_on_disconnect, request, generation, watchers.cancel_scope, gone)
        try:
            result = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except UserError as exc:  # caught here: a task group would wrap it in an ExceptionGroup
            failure = exc
        watchers.cancel_scope.cancel()
    return result, failure, gone.is_set()


async def _cancel_on_disconnect(
    request: Request, generation: Generation, waiting: anyio.CancelScope, gone: anyio.Event
) -> None:
    """The client went away: stop its reply, and stop waiting for it (the worker thread is abandoned at once)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            gone.set()
            generation.cancel()
            waiting.cancel()
            return


class _ReplyEvents(EventSourceResponse):
    """Server-sent events whose reply is cancelled however the response ends: done, failed, or the client gone
    (even before the first event, when the event generator never started)."""

    def __init__(
        self, generation: Generation, events: AsyncIterator[dict[str, str]], ended: Callable[[], None]
    ) -> None:
        super().__init__(events, ping=10)
        self.generation = generation
        self.ended = ended

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.ended()
            self.generation.cancel()


async def _events(generation: Generation, shape: ResponseShape) -> AsyncIterator[dict[str, str]]:
    try:
        for chunk in shape.opening():
            yield _data(chunk)
        while True:
            # Abandoned on a disconnect: the response's cancel then ends the reply and frees the worker.
            text = await anyio.to_thread.run_sync(generation.next_text, abandon_on_cancel=True)
            if text is None:
                break
            for chunk in shape.pieces(text, generation):
                yield _data(chunk)
    except UserError as exc:
        yield _data(_failure(generation, exc).body())
        return
    finally:
        generation.cancel()
    for chunk in shape.closing(generation):
        yield _data(chunk)
    yield {"data": "[DONE]"}


def _failure(generation: Generation, error: UserError) -> ApiError:
    """A request refused (400, naming its kind), or a reply the server ended (503: asking again will work)."""
    sentence = str(error)
    if generation.stop_reason:
        return ApiError(503, sentence, "reply_stopped_by_server")
    if isinstance(error, ModelChangedError):
        return ApiError(503, sentence, "model_changed")
    if isinstance(error, ContextLimitError):
        where = "messages" if generation.request.prompt is None else "prompt"
        return ApiError(400, sentence, "context_length_exceeded", where)
    if isinstance(error, FillInTheMiddleUnsupported):
        return ApiError(400, sentence, "invalid_value", "suffix")
    if isinstance(error, GrammarRefused):
        return ApiError(400, sentence, "invalid_value", "response_format")
    return ApiError(400, sentence, "generation_failed")


def _data(payload: dict[str, object]) -> dict[str, str]:
    return {"data": json.dumps(payload, ensure_ascii=False)}


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = (
            f"There is no {request.url.path}; the API is at /v1 (chat/completions, completions, models)."
        )
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    return ApiError(exc.status_code, message).response()


async def _unexpected_error(_request: Request, exc: Exception) -> Response:
    log.error("serving a request failed", exc_info=exc)
    return ApiError(
        500,
        f"The server failed unexpectedly ({type(exc).__name__}); the details are in its log.",
        "server_error",
    ).response()
