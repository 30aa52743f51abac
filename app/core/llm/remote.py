"""A remote engine: a model on another machine behind an OpenAI-compatible API, in place of the local one.

``RemoteEngine`` implements ``ChatEngine`` (``app.core.llm.protocol``), as the local ``Engine`` does, so the
service runs it on its thread unchanged: ``connect()`` (its "load"), ``model``, ``chat()`` streaming a
``Reply`` with ``ReplyStats``, ``count_tokens``/``tokenize_messages`` for budgets, ``cancel()``, ``idle()`` and
``unload()``. What only a local model has answers with a sentence: loading a file here, and everything reached
through ``protocol.local_engine`` (llama.cpp itself, saved states).

The conversation is cut to the server's context exactly as locally (``app.core.llm.context``), counted with the
server's tokenizer where it offers one, otherwise with a bound that cannot undercount: no tokenizer llama.cpp or
vLLM ships makes more tokens than a text has UTF-8 bytes. The chat template is the server's; its tokens are
counted as a generous allowance per message.

Stopping closes the stream, which is how OpenAI-compatible servers learn to stop generating. A failure
mid-reply raises ``RemoteEngineError`` from the iteration, after the pieces that arrived: the caller keeps them.
Threading: as ``Engine``, every method but ``cancel()`` belongs to the engine thread.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx2
import openai
from openai import Stream
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from app.core.errors import UserError
from app.core.llm.context import ChatMessage, ContextCut, fit_to_context
from app.core.llm.engine import FinishReason, LoadOptions, ModelInfo, Reply
from app.core.llm.remote_config import RemoteEngineError, RemoteServer
from app.core.llm.remote_info import RemoteModelInfo, RemoteReplyStats
from app.core.llm.remote_server import (
    ServerFacts,
    auth_headers,
    count_with_server,
    failure_sentence,
    open_client,
    probe,
    probe_timeout,
)
from app.core.modes import SamplingOptions

log = logging.getLogger(__name__)

# Chat templates wrap each message in a few marker tokens (ChatML: 4 to 5, Llama 3: 5) and open the reply
# with a few more; these allowances are above every common template's.
TOKENS_PER_MESSAGE = 12
TOKENS_FOR_REPLY_OPENING = 12
STOP_CHECK_SECONDS = 0.05  # how often a reply waiting for the server checks for a stop
COUNT_CACHE_SIZE = 4096  # texts whose server count is remembered: chunking counts the same paragraphs often


class RemoteEngine:
    """A model served by another program over OpenAI's API. See the module docstring."""

    def __init__(self, server: RemoteServer) -> None:
        self.server = server
        self.load_fraction = 0.0  # nothing loads here: connecting is a job of its own (``connect``)
        self._client: openai.OpenAI | None = None
        self._http: httpx2.Client | None = None  # the server's root endpoints (/tokenize)
        self._facts: ServerFacts | None = None
        self._remote_info: RemoteModelInfo | None = None
        self._stop = threading.Event()
        self._cut = ContextCut()
        self._counts: OrderedDict[str, int] = OrderedDict()

    # -- state -------------------------------------------------------------------------------------------

    @property
    def model(self) -> ModelInfo | None:
        return self._remote_info

    @property
    def counts_exactly(self) -> bool:
        """Whether token counts come from the server's own tokenizer (else: a bound that never undercounts)."""
        return self._facts is not None and self._facts.tokenize_path is not None

    def connect(self) -> RemoteModelInfo:
        """Ask the server for its models, context length and tokenizer; raises RemoteEngineError."""
        started = time.perf_counter()
        facts = probe(self.server)
        self.unload()
        self._client = open_client(self.server)
        self._http = httpx2.Client(headers=auth_headers(self.server), timeout=probe_timeout())
        self._facts = facts
        self._remote_info = RemoteModelInfo(
            path=Path(facts.model),
            name=facts.model,
            architecture="",
            parameters=0,
            native_context=facts.context_size if facts.context_source == "server" else None,
            context_size=facts.context_size,
            has_chat_template=True,
            file_size=0,
            quantization="",
            threads=0,
            gpu_layers=0,
            load_seconds=time.perf_counter() - started,
            base_url=self.server.url,
            context_source=facts.context_source,
        )
        log.info(
            "connected to %s: model %s, context %d (%s), token counts %s",
            self.server.url,
            facts.model,
            facts.context_size,
            facts.context_source,
            facts.tokenize_path or "estimated",
        )
        return self._remote_info

    def load(
        self,
        path: str | os.PathLike[str],
        options: LoadOptions | None = None,
        progress: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> ModelInfo:
        raise UserError(
            f"A server ({self.server.url}) answers now, so a model file cannot be loaded. Switch Settings → "
            "Engine to This computer first."
        )

    def unload(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._http is not None:
            self._http.close()
        self._client = self._http = None
        self._facts = self._remote_info = None
        self._cut = ContextCut()
        self._counts.clear()

    def cancel(self) -> None:
        self._stop.set()

    def idle(self) -> None:
        """Nothing to save between requests: the server keeps its own state."""

    # -- counting ------------------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        facts = self._connected()[1]
        if facts.tokenize_path is None or self._http is None:
            return len(text.encode("utf-8"))
        cached = self._counts.get(text)
        if cached is not None:
            self._counts.move_to_end(text)
            return cached
        counted = count_with_server(self._http, self.server, facts.tokenize_path, facts.model, text)
        if counted is None:  # the server stopped answering counts: the bound keeps every prompt safe
            return len(text.encode("utf-8"))
        self._counts[text] = counted
        if len(self._counts) > COUNT_CACHE_SIZE:
            self._counts.popitem(last=False)
        return counted

    def tokenize_messages(self, messages: Sequence[ChatMessage]) -> tuple[list[int], list[str]]:
        """Placeholder tokens, as many as ``messages`` may take with the server's template (callers count
        them); no stop strings: the server applies its template's own."""
        total = TOKENS_FOR_REPLY_OPENING + sum(
            TOKENS_PER_MESSAGE + self.count_tokens(m["content"]) for m in messages
        )
        return [0] * total, []

    # -- generation ----------------------------------------------------------------------------------------

    def chat(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingOptions | None = None,
        cancel: threading.Event | None = None,
        state_key: str | None = None,  # the server keeps its own cache: no saved state here
        prompt_progress: Callable[[int, int], None] | None = None,  # servers do not report it
    ) -> Reply:
        """Start a streamed reply. Raises UserError before streaming (not connected, a message too long);
        while streaming, a stop ends it with ``finish_reason == "cancelled"`` and a failure raises
        RemoteEngineError after the pieces that arrived. OpenAI's API reports no prompt progress."""
        sampling = sampling or SamplingOptions()
        self._stop.clear()
        requested = time.perf_counter()
        client, facts = self._connected()
        prompt, self._cut = fit_to_context(
            messages,
            self.tokenize_messages,
            self.count_tokens,
            facts.context_size,
            sampling.max_tokens,
            self._cut,
        )
        sent = _kept_messages(messages, prompt.dropped_messages)
        stats = RemoteReplyStats(
            prompt_tokens=len(prompt.tokens),
            evaluated_tokens=len(prompt.tokens),
            dropped_messages=prompt.dropped_messages,
            context_size=facts.context_size,
            server=self.server.url,
            model=facts.model,
        )

        def stopped() -> bool:
            return self._stop.is_set() or (cancel is not None and cancel.is_set())

        pieces = self._stream_remote(
            client, facts.model, sent, sampling, prompt.max_tokens, stats, stopped, requested
        )
        return Reply(pieces, stats)

    def _connected(self) -> tuple[openai.OpenAI, ServerFacts]:
        if self._client is None or self._facts is None:
            raise RemoteEngineError(
                f"Not connected to the server at {self.server.url}. Connect in Settings → Engine, then try again."
            )
        return self._client, self._facts

    def _stream_remote(
        self,
        client: openai.OpenAI,
        model: str,
        messages: list[ChatMessage],
        sampling: SamplingOptions,
        max_tokens: int,
        stats: RemoteReplyStats,
        stopped: Callable[[], bool],
        requested: float,
    ) -> Iterator[str]:
        finish: FinishReason | None = None
        first_piece_at: float | None = None
        pieces = 0
        usage_seen = False
        reader: _ChunkReader | None = None
        try:
            if stopped():
                finish = "cancelled"
                return
            reader = _ChunkReader(
                lambda: client.chat.completions.create(
                    model=model,
                    messages=_api_messages(messages),
                    stream=True,
                    stream_options={"include_usage": True},
                    max_tokens=max_tokens,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    seed=sampling.seed if sampling.seed is not None else openai.omit,
                )
            )
            for chunk in reader.chunks(stopped):
                if chunk.usage is not None:
                    usage_seen = True
                    stats.prompt_tokens = chunk.usage.prompt_tokens
                    stats.evaluated_tokens = chunk.usage.prompt_tokens
                    stats.generated_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    text = choice.delta.content if choice.delta is not None else None
                    if text:
                        if first_piece_at is None:
                            first_piece_at = time.perf_counter()
                            stats.time_to_first_token = first_piece_at - requested
                        pieces += 1
                        yield text
                    if choice.finish_reason is not None:
                        finish = "length" if choice.finish_reason == "length" else "stop"
            if stopped():
                finish = "cancelled"
            elif finish is None:
                # The stream ended cleanly but without saying the reply was done: the server gave up on it.
                raise RemoteEngineError(
                    f"The server at {self.server.url} ended the reply midway without saying why. What arrived "
                    "is kept; try again, and if it keeps happening, check the server's log."
                )
        except (openai.APIError, httpx2.HTTPError) as exc:
            if stopped():
                finish = "cancelled"
                return
            log.info("the server at %s failed: %s", self.server.url, type(exc).__name__)
            raise failure_sentence(exc, self.server, model=model) from None
        finally:
            if reader is not None:
                reader.abandon()  # the stream closes: the server sees the connection go and stops generating
            done = time.perf_counter()
            stats.finish_reason = finish or "stop"
            stats.total_seconds = done - requested
            if not usage_seen:
                stats.generated_tokens = pieces  # servers send about one token per piece
            if first_piece_at is None:
                stats.time_to_first_token = stats.total_seconds
            elif stats.generated_tokens > 1 and done > first_piece_at:
                stats.tokens_per_second = (stats.generated_tokens - 1) / (done - first_piece_at)


class _ChunkReader:
    """Reads a streamed reply on a thread of its own, so a stop never waits for the server: the engine thread
    takes chunks from a queue, checking for a stop in between, and leaves at once; the reader then closes the
    stream when its current read returns (the next chunk, or the read timeout)."""

    _END = object()

    def __init__(self, open_stream: Callable[[], Stream[ChatCompletionChunk]]) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._abandoned = threading.Event()
        self._thread = threading.Thread(
            target=self._read, args=(open_stream,), name="remote-reply", daemon=True
        )
        self._thread.start()

    def _read(self, open_stream: Callable[[], Stream[ChatCompletionChunk]]) -> None:
        stream: Stream[ChatCompletionChunk] | None = None
        try:
            stream = open_stream()
            for chunk in stream:
                if self._abandoned.is_set():
                    break
                self._queue.put(chunk)
            self._queue.put(self._END)
        except BaseException as exc:  # raised again on the engine thread, which turns it into a sentence
            self._queue.put(exc)
        finally:
            if stream is not None:
                stream.close()

    def chunks(self, stopped: Callable[[], bool]) -> Iterator[ChatCompletionChunk]:
        """The chunks as they come, until the stream ends or ``stopped()``; raises what the reader raised."""
        while not stopped():
            try:
                item = self._queue.get(timeout=STOP_CHECK_SECONDS)
            except queue.Empty:
                continue
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, ChatCompletionChunk)
            yield item

    def abandon(self) -> None:
        self._abandoned.set()


def _api_messages(messages: Sequence[ChatMessage]) -> list[ChatCompletionMessageParam]:
    api: list[ChatCompletionMessageParam] = []
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "system":
            api.append({"role": "system", "content": content})
        elif role == "assistant":
            api.append({"role": "assistant", "content": content})
        else:
            api.append({"role": "user", "content": content})
    return api


def _kept_messages(messages: Sequence[ChatMessage], dropped: int) -> list[ChatMessage]:
    """The messages ``fit_to_context`` kept: the pinned ones and the first system prompt, then all but the
    ``dropped`` oldest of the rest (its partition, applied to the messages rather than to tokens)."""

    def pinned(index: int, message: ChatMessage) -> bool:
        return bool(message.get("pinned")) or (message["role"] == "system" and index == 0)

    kept_first = [m for i, m in enumerate(messages) if pinned(i, m)]
    droppable = [m for i, m in enumerate(messages) if not pinned(i, m)]
    return [*kept_first, *droppable[dropped:]]
