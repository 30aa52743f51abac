"""Continuous batching: several replies decoded together, one token of each per step, in one llama.cpp context.

Each reply is a sequence of the one KV cache (llama.cpp sequence ids 0..N-1, the ``Llama`` loaded with room for N,
``bindings.parallel_sequences``). Every step builds ONE ``llama_batch``: the next token of every sequence that is
generating, plus chunks of the prompts of sequences that joined, up to ``n_batch`` tokens; decodes it once; and
draws each sequence's token from its own row of the logits with its own sampler chain (``TokenSampler``: its own
seed, penalties, grammar), in C. A request joins between steps; one that ends (its end token, a stop, max_tokens, a
cancel) leaves.

Like llama-server's slots, a sequence that leaves keeps its cells, and a request joins the free sequence whose
cells share the longest beginning with its prompt (a client's next turn finds its conversation): only the rest is
evaluated. Sequence 0 is the one the engine's own path uses (``Llama`` knows no other): the window's request
prefers it, so the person's conversation is continued from the same cells whichever path answers it, and the
loop keeps ``Llama``'s record of what sequence 0 holds (``input_ids``, ``n_tokens``) true when a reply there ends.

Like llama-server's slots, each sequence may use ``n_ctx / N`` cells of the context: a prompt that does not fit that
share is refused with ContextLimitError, so the sequences together never need more cells than the cache has.

The loop and the engine's own single-sequence path must not interleave: ``Llama.eval`` removes the cells of every
sequence after its own position. The engine service runs the ordinary path only when no sequence is active, after
``yield_cache`` has removed the other sequences' cells, and ``BatchedDecoder`` takes the cache over
(``take_over``: the engine's record of whose conversation it holds is dropped) each time a batch starts. Threading: as ``Engine``, everything here runs on the engine thread; a sequence's cancel event may be set
from anywhere and is checked between steps.
"""

from __future__ import annotations

import codecs
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.core.errors import UserError
from app.core.llm.bindings import cached_tokens, end_of_generation
from app.core.llm.context import ChatMessage, Prompt, whole_prompt
from app.core.llm.engine import Engine, FinishReason, Reply, ReplyStats
from app.core.llm.sampling import ReplyOptions, TokenLogprob, TokenSampler, token_logprob
from app.core.llm.saved_state_store import common_prefix
from app.core.llm.stops import StopScanner
from app.core.modes import SamplingOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SequenceListener:
    """Where one batched reply's answers go, called on the engine thread (as ``service.ReplyCallbacks``)."""

    started: Callable[[Reply], None]  # the prompt was accepted; before any text
    text: Callable[[str], None]
    finished: Callable[[ReplyStats], None]
    failed: Callable[[Exception], None]  # the reply broke off (a UserError holds a sentence)
    prompt_progress: Callable[[int, int], None] | None = None


def slot_size(engine: Engine, parallel: int) -> int:
    """The cells one sequence may use: its even share of the context, as llama-server gives each slot (as
    ``Engine.sequence_context``, for a decoder of ``parallel`` sequences)."""
    return int(engine.llama.n_ctx()) // max(1, parallel)


def chat_prompt(
    engine: Engine,
    messages: Sequence[ChatMessage],
    sampling: SamplingOptions,
    options: ReplyOptions,
    slot: int,
) -> Prompt:
    """The prompt of a chat request for a sequence of ``slot`` cells: cut to fit the context as the engine cuts a
    conversation (the window), else taken whole (the API) and refused when it does not fit the slot."""
    if options.cut_history and not options.tools:
        prompt = engine.build_prompt(messages, sampling.max_tokens)
        return _within_slot(
            prompt.tokens, prompt.stop, sampling.max_tokens, options, slot, prompt.dropped_messages
        )
    tokens, stops = engine.tokenize_messages(messages, tools=options.tools)
    return _within_slot(tokens, stops, sampling.max_tokens, options, slot)


def completion_prompt(
    engine: Engine, prompt: str | Sequence[int], sampling: SamplingOptions, options: ReplyOptions, slot: int
) -> Prompt:
    """The prompt of a raw completion (no echo, no suffix: those run on the engine's own path), as
    ``Engine.complete`` reads it."""
    tokens = engine.raw_tokens(prompt)
    if not tokens:
        raise UserError("The prompt is empty: give the model some text to continue.")
    return _within_slot(tokens, [], sampling.max_tokens, options, slot)


def _within_slot(
    tokens: list[int], stops: list[str], max_tokens: int, options: ReplyOptions, slot: int, dropped: int = 0
) -> Prompt:
    """``tokens`` whole in one sequence's share of the context, refused with the figures as ``Engine`` refuses a
    prompt too long for the whole context."""
    return whole_prompt(
        tokens,
        stops,
        max_tokens,
        limit=slot,
        max_tokens_required=options.max_tokens_required,
        space="each request's share of the model's context (the server answers several together)",
        remedy="start the server with a larger context or fewer parallel requests",
        dropped=dropped,
    )


@dataclass(eq=False)
class _Sequence:
    """One reply under way in the batch: its prompt still to evaluate, its sampler, and what it has written."""

    seq_id: int
    prompt: Prompt
    sampler: TokenSampler
    options: ReplyOptions
    listener: SequenceListener
    cancel: threading.Event
    priority: bool
    stats: ReplyStats
    requested: float
    stops: StopScanner
    logprobs: list[TokenLogprob] = field(default_factory=list)
    evaluated: int = 0  # prompt tokens in the cache
    generated: list[int] = field(default_factory=list)
    generated_in_cache: int = 0  # generated tokens evaluated (the last drawn is, once in a step)
    previous: list[int] = field(default_factory=list)  # the tokens before the next one, for its text
    starts: list[int] = field(default_factory=list)  # where each generated token's text begins
    decoded: int = 0
    returned: int = 0
    pending: int | None = None  # the token drawn last, to be evaluated in the next step
    prompt_done_at: float | None = None
    first_token_at: float | None = None
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))

    @property
    def prompt_left(self) -> int:
        return len(self.prompt.tokens) - self.evaluated


class BatchedDecoder:
    """Up to ``parallel`` replies decoded together in ``engine``'s context. See the module docstring."""

    def __init__(self, engine: Engine, parallel: int) -> None:
        import llama_cpp

        self.engine = engine
        self.llama = engine.llama
        self.parallel = parallel
        self.slot = slot_size(engine, parallel)
        self._n_batch = max(1, int(self.llama.n_batch))
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._sequences: list[_Sequence | None] = [None] * parallel
        # The tokens whose cells each sequence kept when its last reply ended (sequence 0's are Llama's record).
        self._held: list[list[int]] = [[] for _ in range(parallel)]
        # Whether sequence 0 holds the window's conversation (from its request, or the engine's own path), which
        # other clients leave alone; once another client's reply has replaced it, it is a slot like the others.
        self._zero_is_windows = True
        self._is_end = end_of_generation(self.llama)

    # -- joining and leaving -------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return any(sequence is not None for sequence in self._sequences)

    @property
    def has_room(self) -> bool:
        return any(sequence is None for sequence in self._sequences)

    def take_over(self) -> None:
        """The first sequence of a batch joins: the engine saves the conversation its own path left in sequence 0
        (as the service does when idle) and stops counting those cells as that conversation's, since a reply
        here may replace them; the cells stay, for a request that continues them."""
        self.engine.lend_cache()

    def yield_cache(self) -> None:
        """The engine's own path is about to run: the other sequences' cells go (``Llama.eval`` would cut them at
        its own position and leave them half true); sequence 0's stay, as ``Llama`` records them."""
        import llama_cpp

        self._zero_is_windows = True  # what the engine's own path leaves there is the window's
        memory = llama_cpp.llama_get_memory(self.llama._ctx.ctx)
        for seq_id in range(1, self.parallel):
            if self._held[seq_id]:
                llama_cpp.llama_memory_seq_rm(memory, seq_id, -1, -1)
                self._held[seq_id] = []

    def _held_tokens(self, seq_id: int) -> list[int]:
        return cached_tokens(self.llama) if seq_id == 0 else self._held[seq_id]

    def _choose_sequence(self, tokens: list[int], priority: bool) -> tuple[int, int]:
        """The sequence a request joins, and how many of its first ``tokens`` that sequence's cells hold. The
        window's request takes sequence 0, where its conversation lives, when it is free; any other takes the
        free sequence whose cells share the longest beginning with its prompt, leaving sequence 0 to the window
        while it holds the person's conversation (a system prompt in common must not make another client's reply
        replace it) unless no other is free."""
        free = [seq_id for seq_id, sequence in enumerate(self._sequences) if sequence is None]
        if priority and 0 in free:
            chosen = 0
        else:
            spared = self._zero_is_windows and not priority
            others = [seq_id for seq_id in free if seq_id != 0 or not spared] or free
            chosen = max(others, key=lambda seq_id: common_prefix(self._held_tokens(seq_id), tokens))
        if chosen == 0:
            self._zero_is_windows = priority
        return chosen, common_prefix(self._held_tokens(chosen), tokens)

    def _into_sequence_zero(self, tokens: list[int], shared: int, state_key: str | None) -> int:
        """A request takes sequence 0: the engine's record of whose conversation it holds follows it (a saved
        state of ``state_key``'s conversation that holds more of ``tokens`` than the cells do is put back, as on
        the engine's own path); returns how many of ``tokens`` sequence 0 then holds."""
        states = self.engine.states
        if state_key is None:
            states.cache_cleared()  # another client's reply: no conversation's state to save from these cells
            return shared
        states.before_prompt(self.llama, state_key, tokens)
        return common_prefix(cached_tokens(self.llama), tokens)

    def _reuse(self, seq_id: int, tokens: list[int], shared: int) -> int:
        """Keep the first ``shared`` cells of ``seq_id`` (at least the last prompt token is evaluated again: its
        logits are what the first token is drawn from) and remove the rest; returns the cells kept."""
        import llama_cpp

        kept = min(shared, len(tokens) - 1)
        memory = llama_cpp.llama_get_memory(self.llama._ctx.ctx)
        if not llama_cpp.llama_memory_seq_rm(memory, seq_id, kept, -1):
            llama_cpp.llama_memory_seq_rm(memory, seq_id, -1, -1)  # a cache that cannot drop a suffix
            kept = 0
        self._record(seq_id, tokens[:kept])
        return kept

    def _record(self, seq_id: int, tokens: list[int]) -> None:
        """``seq_id`` holds the cells of ``tokens``, exactly; for sequence 0 in ``Llama``'s own record, which the
        engine's own path continues from."""
        if seq_id == 0:
            self.llama.input_ids[: len(tokens)] = tokens
            self.llama.n_tokens = len(tokens)
        else:
            self._held[seq_id] = list(tokens)

    def join(
        self,
        prompt: Prompt,
        sampling: SamplingOptions,
        options: ReplyOptions,
        cancel: threading.Event,
        listener: SequenceListener,
        *,
        priority: bool = False,
        requested: float | None = None,
        state_key: str | None = None,
    ) -> None:
        """Start a reply to ``prompt`` in a free sequence (``has_room`` must be true); its prompt is evaluated in
        the coming steps, a priority one's before any other sequence's next token. Raises UserError (a grammar
        refused) before anything is started. ``state_key``: the conversation whose saved state may serve the
        prompt in sequence 0, as on the engine's own path (``Engine.chat``)."""
        if not self.active:
            self.take_over()
        sampler = TokenSampler(self.llama, sampling, options)
        seq_id, shared = self._choose_sequence(prompt.tokens, priority)
        if seq_id == 0:
            shared = self._into_sequence_zero(prompt.tokens, shared, state_key if priority else None)
        kept = self._reuse(seq_id, prompt.tokens, shared)
        info = self.engine.model
        stats = ReplyStats(
            prompt_tokens=len(prompt.tokens),
            evaluated_tokens=len(prompt.tokens) - kept,
            dropped_messages=prompt.dropped_messages,
            context_size=self.slot,
            model=str(info.path) if info is not None else "",
        )
        sequence = _Sequence(
            seq_id=seq_id,
            prompt=prompt,
            sampler=sampler,
            options=options,
            listener=listener,
            cancel=cancel,
            priority=priority,
            stats=stats,
            requested=requested if requested is not None else time.perf_counter(),
            stops=StopScanner([*prompt.stop, *options.stops]),
            previous=list(prompt.tokens),
            evaluated=kept,
        )
        self._sequences[seq_id] = sequence
        _call(listener.started, Reply(iter(()), stats, sequence.logprobs))

    def make_way(self) -> None:
        """A priority request arrived (any thread): a step under way is interrupted, so that request's prompt is
        evaluated next instead of after it (on Gemma 3 270M a step of 4 sequences takes ~50 ms, as long as the
        window's whole first token when idle). The interrupted step's cells are removed by llama.cpp and its
        tokens go into the next step. Nothing is done when there is no room for the request anyway."""
        if self.active and self.has_room:
            self.engine.interrupt()

    def cancel_all(self) -> None:
        """Stop every sequence at the next step (the service is shutting down)."""
        for sequence in self._sequences:
            if sequence is not None:
                sequence.cancel.set()

    def close(self) -> None:
        """End every sequence as cancelled and free the batch; the cells of sequences other than 0 go (a decoder
        made after this one knows nothing of them)."""
        import llama_cpp

        for sequence in self._sequences:
            if sequence is not None:
                self._leave(sequence, "cancelled")
        self.yield_cache()
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None

    def _leave(self, sequence: _Sequence, finish: FinishReason, error: Exception | None = None) -> None:
        """End ``sequence``: its cells kept for a request that continues them (exactly those of the tokens
        evaluated), its sampler closed, its figures completed, its listener told."""
        import llama_cpp

        self._sequences[sequence.seq_id] = None
        in_cache = sequence.prompt.tokens[: sequence.evaluated]
        if sequence.evaluated == len(sequence.prompt.tokens):
            in_cache = in_cache + sequence.generated[: sequence.generated_in_cache]
        memory = llama_cpp.llama_get_memory(self.llama._ctx.ctx)
        llama_cpp.llama_memory_seq_rm(memory, sequence.seq_id, len(in_cache), -1)
        self._record(sequence.seq_id, in_cache)
        sequence.sampler.close()
        if error is None and not sequence.stops.stopped:
            tail = sequence.stops.feed(sequence.decoder.decode(b"", final=True))
            tail += sequence.stops.flush() if not sequence.stops.stopped else ""
            if tail:
                sequence.returned += len(tail)
                _call(sequence.listener.text, tail)
        self._complete_stats(sequence, finish)
        if error is not None:
            _call(sequence.listener.failed, error)
        else:
            _call(sequence.listener.finished, sequence.stats)

    def _complete_stats(self, sequence: _Sequence, finish: FinishReason) -> None:
        """As ``Engine._stream`` ends a reply: tokens that only wrote a stop are not counted, nor their
        log-probabilities kept, so the figures describe the reply as the caller got it."""
        stats, generated = sequence.stats, sequence.generated
        returned_tokens = (
            sum(1 for start in sequence.starts if start < sequence.returned)
            if sequence.stops.stopped
            else len(generated)
        )
        del sequence.logprobs[returned_tokens:]
        stats.generated_tokens = returned_tokens
        stats.finish_reason = finish
        done = time.perf_counter()
        stats.total_seconds = done - sequence.requested
        if sequence.prompt_done_at is not None:
            eval_seconds = sequence.prompt_done_at - sequence.requested
            if eval_seconds > 0:
                stats.prompt_tokens_per_second = stats.evaluated_tokens / eval_seconds
            if len(generated) > 1 and done > sequence.prompt_done_at:
                stats.tokens_per_second = (len(generated) - 1) / (done - sequence.prompt_done_at)
        if sequence.first_token_at is None:
            stats.time_to_first_token = done - sequence.requested

    # -- one step ------------------------------------------------------------------------------------------

    def step(self) -> None:
        """Decode one batch and draw the next token of every sequence whose logits it computed."""
        import llama_cpp

        for sequence in self._sequences:
            if sequence is not None and sequence.cancel.is_set():
                self._leave(sequence, "cancelled")
        rows = self._fill_batch()
        if not rows:
            return
        self.engine.resume()  # an interrupt meant for a step before this one
        result = int(llama_cpp.llama_decode(self.llama._ctx.ctx, self._batch))
        if result == 2:  # interrupted (make_way): llama.cpp removed the step's cells; its tokens go next time
            for sequence, _row, chunk in rows:
                if not chunk:
                    sequence.pending = sequence.generated[-1]
                    sequence.generated_in_cache = len(sequence.generated) - 1
            return
        if result != 0:
            self._fail_all(result)
            return
        now = time.perf_counter()
        for sequence, row, chunk in rows:
            if chunk:
                sequence.evaluated += chunk
                if sequence.listener.prompt_progress is not None:
                    _call(sequence.listener.prompt_progress, sequence.evaluated, len(sequence.prompt.tokens))
            if row < 0:
                continue  # a prompt chunk before the last: no token to draw yet
            if sequence.prompt_done_at is None:
                sequence.prompt_done_at = now
            try:
                self._take(sequence, row)
            except UserError as exc:  # a grammar that allows no token
                self._leave(sequence, "stop", exc)
            except Exception as exc:
                log.exception("drawing a batched reply's token failed")
                self._leave(sequence, "stop", exc)

    def _fill_batch(self) -> list[tuple[_Sequence, int, int]]:
        """Fill the batch; returns, per sequence in it, the row its logits are in (-1: none) and how many of its
        prompt tokens it holds."""
        batch = self._batch
        count = 0
        rows: list[tuple[_Sequence, int, int]] = []

        def add(token: int, position: int, seq_id: int, logits: bool) -> None:
            nonlocal count
            batch.token[count] = token
            batch.pos[count] = position
            batch.n_seq_id[count] = 1
            batch.seq_id[count][0] = seq_id
            batch.logits[count] = logits
            count += 1

        active = [sequence for sequence in self._sequences if sequence is not None]
        prompting = [sequence for sequence in active if sequence.prompt_left > 0]
        urgent = [sequence for sequence in prompting if sequence.priority]
        if urgent:
            # A priority request's prompt goes before every other sequence's next token.
            prompting, generating = urgent, []
        else:
            generating = [sequence for sequence in active if sequence.pending is not None]
        # A batch smaller than the sequences (a tiny n_batch): the rest wait a step.
        for sequence in generating[: self._n_batch]:
            assert sequence.pending is not None
            rows.append((sequence, count, 0))
            sequence.generated_in_cache = len(sequence.generated)
            add(
                sequence.pending,
                len(sequence.prompt.tokens) + len(sequence.generated) - 1,
                sequence.seq_id,
                True,
            )
            sequence.pending = None
        for sequence in sorted(prompting, key=lambda s: not s.priority):
            room = self._n_batch - count
            if room <= 0:
                break
            chunk = min(room, sequence.prompt_left)
            start = sequence.evaluated
            for offset in range(chunk):
                position = start + offset
                last = position == len(sequence.prompt.tokens) - 1
                add(sequence.prompt.tokens[position], position, sequence.seq_id, last)
            rows.append((sequence, count - 1 if start + chunk == len(sequence.prompt.tokens) else -1, chunk))
        batch.n_tokens = count
        return rows

    def _take(self, sequence: _Sequence, row: int) -> None:
        """Draw ``sequence``'s next token from ``row`` and hand on its text, as ``Engine._stream`` does."""
        llama, stats = self.llama, sequence.stats
        token = sequence.sampler.sample(row)
        if self._is_end(token):
            self._leave(sequence, "stop")
            return
        top = sequence.options.top_logprobs
        if top is not None:
            sequence.logprobs.append(token_logprob(llama, token, top, row))
        sequence.generated.append(token)
        stats.generated_tokens = len(sequence.generated)
        special = sequence.options.tools is not None
        piece = sequence.decoder.decode(
            llama.detokenize([token], prev_tokens=sequence.previous, special=special)
        )
        sequence.previous.append(token)
        sequence.starts.append(sequence.decoded)
        sequence.decoded += len(piece)
        if piece:
            if sequence.first_token_at is None:
                sequence.first_token_at = time.perf_counter()
                stats.time_to_first_token = sequence.first_token_at - sequence.requested
            text = sequence.stops.feed(piece)
            if text:
                sequence.returned += len(text)
                _call(sequence.listener.text, text)
            if sequence.stops.stopped:
                self._leave(sequence, "stop")
                return
        if len(sequence.generated) >= sequence.prompt.max_tokens:
            self._leave(sequence, "length")
            return
        sequence.pending = token

    def _fail_all(self, result: int) -> None:
        """llama_decode refused the batch: every sequence ends with a sentence (its text so far kept)."""
        log.error("llama_decode of a batch failed with %s", result)
        error = UserError(
            f"llama.cpp could not compute the batch of requests answered together (error {result}); send the "
            "request again, or start the server with fewer parallel requests."
        )
        for sequence in self._sequences:
            if sequence is not None:
                self._leave(sequence, "failed", error)
        # What the failed step wrote is unknown: no cell is trusted again.
        import llama_cpp

        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.llama._ctx.ctx), True)
        self._held = [[] for _ in range(self.parallel)]
        self.engine.clear_cache()


def _call(callback: Callable[..., None], *args: Any) -> None:
    """A listener's failure must not stop the other sequences of the batch."""
    try:
        callback(*args)
    except Exception:
        log.exception("a batched reply's listener failed")
