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

The reply is read at the HTTP level (``app.core.llm.remote_stream``): every line, event and the whole response
within a limit, and everything the server says made safe to show. A reply that brings nothing for
``RemoteServer.wait_seconds`` (before its first token, or between two) is ended: the server's keep-alives do not
count, so a server that only sends them cannot hold a reply forever.

Stopping closes the stream, which is how OpenAI-compatible servers learn to stop generating. A failure
mid-reply raises ``RemoteEngineError`` from the iteration, after the pieces that arrived: the caller keeps them.
Threading: as ``Engine``, every method but ``cancel()`` belongs to the engine thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path

import httpx2

from app.core.errors import UserError
from app.core.llm.context import ChatMessage, ContextCut, fit_to_context
from app.core.llm.engine import FinishReason, ModelInfo, Reply
from app.core.llm.load_options import LoadOptions
from app.core.llm.remote_config import RemoteEngineError, RemoteServer
from app.core.llm.remote_info import RemoteModelInfo, RemoteReplyStats
from app.core.llm.remote_server import (
    ServerFacts,
    auth_headers,
    count_with_server,
    failure_sentence,
    probe,
    probe_timeout,
)
from app.core.llm.remote_stream import StreamChunk, open_reply_stream, reply_chunks
from app.core.llm.sampling import ReplyOptions
from app.core.modes import SamplingOptions
from app.core.units import counted

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
        self._http: httpx2.Client | None = None  # replies, and the server's root endpoints (/tokenize)
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
        if self._http is not None:
            self._http.close()
        self._http = None
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
        options: ReplyOptions | None = None,
    ) -> Reply:
        """Start a streamed reply. Raises UserError before streaming (not connected, a message too long);
        while streaming, a stop ends it with ``finish_reason == "cancelled"`` and a failure raises
        RemoteEngineError after the pieces that arrived. OpenAI's API reports no prompt progress.

        Of ``options``, stops are sent on to the server; what only this computer's engine does (grammars, a
        logit bias by this model's token ids, log-probabilities, tools) is refused with a sentence."""
        sampling = sampling or SamplingOptions()
        options = options or ReplyOptions()
        if options.grammar or options.logit_bias or options.top_logprobs is not None or options.tools:
            raise RemoteEngineError(
                "Grammars, logit bias, log-probabilities and tools are served by a model on this computer only; "
                "switch Settings → Engine to This computer."
            )
        self._stop.clear()
        requested = time.perf_counter()
        http, facts = self._connected()
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
            http, facts.model, sent, sampling, prompt.max_tokens, stats, stopped, requested, options.stops
        )
        return Reply(pieces, stats)

    def _connected(self) -> tuple[httpx2.Client, ServerFacts]:
        if self._http is None or self._facts is None:
            raise RemoteEngineError(
                f"Not connected to the server at {self.server.url}. Connect in Settings → Engine, then try again."
            )
        return self._http, self._facts

    def _silence_sentence(self) -> RemoteEngineError:
        waited = counted(round(self.server.wait_seconds), "second")
        return RemoteEngineError(
            f"The server at {self.server.url} sent nothing of the reply for {waited}, so it was ended; what "
            "arrived is kept. If the server is busy or slow, allow a longer wait (--remote-wait, or Longest wait "
            "for a token in Settings → Engine); otherwise check that the server is working (its log)."
        )

    def _stream_remote(
        self,
        http: httpx2.Client,
        model: str,
        messages: list[ChatMessage],
        sampling: SamplingOptions,
        max_tokens: int,
        stats: RemoteReplyStats,
        stopped: Callable[[], bool],
        requested: float,
        stops: tuple[str, ...] = (),
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
            body: dict[str, object] = {
                "model": model,
                "messages": _api_messages(messages),
                "stream": True,
                "stream_options": {"include_usage": True},
                "max_tokens": max_tokens,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
            }
            if sampling.seed is not None:
                body["seed"] = sampling.seed
            if stops:
                body["stop"] = list(stops)
            server = self.server

            def read_reply(abandoned: Callable[[], bool]) -> Generator[StreamChunk]:
                with contextlib.closing(open_reply_stream(http, server, body, model)) as response:
                    yield from reply_chunks(response, server, abandoned)

            reader = _ChunkReader(read_reply)
            for chunk in reader.chunks(stopped, server.wait_seconds, self._silence_sentence):
                if chunk.usage is not None:
                    usage_seen = True
                    stats.prompt_tokens, stats.generated_tokens = chunk.usage
                    stats.evaluated_tokens = stats.prompt_tokens
                if chunk.text:
                    if first_piece_at is None:
                        first_piece_at = time.perf_counter()
                        stats.time_to_first_token = first_piece_at - requested
                    pieces += 1
                    yield chunk.text
                if chunk.finish is not None:
                    finish = "length" if chunk.finish == "length" else "stop"
            if stopped():
                finish = "cancelled"
            elif finish is None:
                # The stream ended cleanly but without saying the reply was done: the server gave up on it.
                raise RemoteEngineError(
                    f"The server at {self.server.url} ended the reply midway without saying why. What arrived "
                    "is kept; try again, and if it keeps happening, check the server's log."
                )
        except httpx2.HTTPError as exc:
            if stopped():
                finish = "cancelled"
                return
            log.info("the server at %s failed: %s", self.server.url, type(exc).__name__)
            raise failure_sentence(exc, self.server, model=model) from None
        except RemoteEngineError as exc:  # a refusal, a limit passed, a wait run out: already a sentence
            if stopped():
                finish = "cancelled"
                return
            log.info("a reply from %s was ended: %s", self.server.url, exc)
            raise
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
    takes chunks from a queue, checking for a stop and the wait for progress in between, and leaves at once; the
    reader then closes the stream when its current read returns (the next bytes, or the read timeout)."""

    _END = object()

    def __init__(self, read: Callable[[Callable[[], bool]], Generator[StreamChunk]]) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(read,), name="remote-reply", daemon=True)
        self._thread.start()

    def _read(self, read: Callable[[Callable[[], bool]], Generator[StreamChunk]]) -> None:
        chunks = read(self._abandoned.is_set)
        try:
            for chunk in chunks:
                if self._abandoned.is_set():
                    break
                self._queue.put(chunk)
            self._queue.put(self._END)
        except BaseException as exc:  # raised again on the engine thread, which turns it into a sentence
            self._queue.put(exc)
        finally:
            chunks.close()  # closes the response: the server sees the connection go

    def chunks(
        self, stopped: Callable[[], bool], wait_seconds: float, silence: Callable[[], BaseException]
    ) -> Iterator[StreamChunk]:
        """The chunks as they come, until the stream ends or ``stopped()``; raises what the reader raised, and
        ``silence()`` when ``wait_seconds`` pass without progress (text, a tool call, the end), from the start
        and then from the last progress: keep-alives and empty chunks do not count."""
        last_progress = time.monotonic()
        while not stopped():
            left = last_progress + wait_seconds - time.monotonic()
            if left <= 0:
                raise silence()
            try:
                item = self._queue.get(timeout=min(STOP_CHECK_SECONDS, left))
            except queue.Empty:
                continue
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, StreamChunk)
            if item.progressed:
                last_progress = time.monotonic()
            yield item

    def abandon(self) -> None:
        self._abandoned.set()


def _api_messages(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """OpenAI's roles: any other one is sent as the user's."""
    return [
        {
            "role": message["role"] if message["role"] in ("system", "assistant") else "user",
            "content": message["content"],
        }
        for message in messages
    ]


def _kept_messages(messages: Sequence[ChatMessage], dropped: int) -> list[ChatMessage]:
    """The messages ``fit_to_context`` kept: the pinned ones and the first system prompt, then all but the
    ``dropped`` oldest of the rest (its partition, applied to the messages rather than to tokens)."""

    def pinned(index: int, message: ChatMessage) -> bool:
        return bool(message.get("pinned")) or (message["role"] == "system" and index == 0)

    kept_first = [m for i, m in enumerate(messages) if pinned(i, m)]
    droppable = [m for i, m in enumerate(messages) if not pinned(i, m)]
    return [*kept_first, *droppable[dropped:]]
