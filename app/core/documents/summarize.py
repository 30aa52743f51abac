"""Summaries of documents of any length with the loaded model: chunking, map-reduce, progress, cancel, cache.

How a summary is made:

1. The document is cut into chunks on natural boundaries (sections and pages first, then paragraphs, then
   sentences), measured with the model's own tokenizer so that each chunk fits the context with room for its
   summary.
2. A document that fits the context whole (with room for the answer) is summarized in one pass.
3. Otherwise every chunk is summarized on its own (map), and the section summaries, each labelled with its pages
   or sections, are combined (reduce). When they are still too long for one prompt, consecutive ones are
   combined in groups, level after level, until the final prompt fits. Every level at least halves the number
   of parts, so the work is bounded, and every chunk is read exactly once.

Map-reduce rather than a running summary: a running summary threads one text through every step, so a small
context fills up with it and a cached step is useless once an earlier one changes. Independent section
summaries cost the same, can be cached one by one, and survive a cancel.

Section summaries are cached on disk by (document text hash, model file and chat template, settings, chunk
text), not by style: asking for another style, or running again after a cancel, reuses them. The final answer
streams through a callback. Progress (parts done / total, ETA) is reported after every part, and within the
part under way (its prompt read, then its words written: ``summary_pace``) every half second. A cancel
(``cancel()`` from any thread, or the request's own ``cancel`` event given to ``summarize``) stops within a
moment, keeping the section summaries finished so far.

A part the model wrote nothing for is asked once more, with some randomness; still empty, it is a failed part:
cached as such (a run again gets the same answer from the same model, so it is not asked again), counted in
``empty_parts``, and left out of what is built on the parts. When nothing at all was written, the summary ends
with ``NothingWrittenError``, a sentence saying so, instead of an empty "done".

The cutting is in ``chunking``, the prompts in ``summary_prompts``, the cache in ``summary_cache``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace

from app.core.documents.chunking import Chunk, ChunkingStopped, chunk_document, span_label
from app.core.documents.document import Document
from app.core.documents.summary_cache import SummaryCache, cache_key
from app.core.documents.summary_pace import SummaryPace
from app.core.documents.summary_prompts import (
    PROMPT_VERSION,
    OneLinePoint,
    combine_prompt,
    final_prompt,
    listing,
    map_prompt,
    marked_text,
    one_pass_prompt,
    point_prompt,
    whole_sentences,
)
from app.core.documents.summary_types import (
    CallRecord,
    PartSummary,
    ProgressCallback,
    SummaryProgress,
    SummaryResult,
    SummarySettings,
    SummaryStage,
    SummaryStyle,
    TextCallback,
    summary_style,
)
from app.core.errors import NoModelLoadedError, UserError
from app.core.llm.context import ChatMessage
from app.core.llm.protocol import ChatEngine
from app.core.llm.templates import BUILTIN_TEMPLATES
from app.core.modes import SamplingOptions

log = logging.getLogger(__name__)

# Below this a chunk plus its summary leaves too little room for text worth summarizing.
MIN_CONTEXT = 512
# Tokens kept free beyond each prompt and answer, for the chat template's closing tokens.
SAFETY_TOKENS = 8
# Progress within a part (its prompt read, its words written) is reported at most this often: the window repaints
# its bar, and a terminal writes a line, for each report.
PART_REPORT_SECONDS = 0.5
# The second asking of a part that came back empty: a reply that ends at once is usually the end-of-turn token
# winning the first pick by a little, which some randomness gets past; the seed keeps the retry repeatable.
RETRY_TEMPERATURE = 0.8
RETRY_SEED = 1


class NothingWrittenError(UserError):
    """The model wrote nothing for any part of a document: there is no summary to show."""


class _Stopped(Exception):
    """A cancel, unwinding a run; control flow that never leaves this module."""


class Summarizer:
    """Summarizes documents with the engine it is given and no other, on the thread that owns that engine
    (build it there too: the job that runs a summary on the engine service does). ``cancel()`` is safe from any
    thread, and so is setting the ``cancel`` event given to ``summarize``."""

    def __init__(
        self,
        engine: ChatEngine,
        cache: SummaryCache | None = None,
        settings: SummarySettings | None = None,
        *,
        use_cache: bool = True,
    ) -> None:
        self.engine = engine
        self.cache = (cache or SummaryCache()) if use_cache else None
        self.settings = settings or SummarySettings()
        self._stop = threading.Event()

    def cancel(self) -> None:
        """Stop the running summary soon; finished section summaries are kept (and cached)."""
        self._stop.set()
        self.engine.cancel()

    @property
    def cancel_requested(self) -> bool:
        """Whether ``cancel()`` was called since the running summary started."""
        return self._stop.is_set()

    # -- sizes --

    @property
    def context_size(self) -> int:
        info = self.engine.model
        if info is None:
            raise NoModelLoadedError("No model is loaded. Choose a model first, then summarize.")
        return info.context_size

    def prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """How many tokens ``messages`` take once the chat template has been applied."""
        return len(self.engine.tokenize_messages(messages)[0])

    def fits(self, messages: Sequence[ChatMessage], answer_tokens: int) -> bool:
        """Whether ``messages`` and an answer of ``answer_tokens`` fit the context together."""
        return self.prompt_tokens(messages) + answer_tokens + SAFETY_TOKENS <= self.context_size

    def chunk_budget(self) -> int:
        """Tokens of document text per section prompt: the context less the instructions and the answer."""
        overhead = self.prompt_tokens(map_prompt(""))
        return self.context_size - overhead - self.settings.section_max_tokens - SAFETY_TOKENS

    def chunks(self, document: Document) -> list[Chunk]:
        """``document`` cut as a summary would cut it."""
        return chunk_document(document, self.engine.count_tokens, self.chunk_budget())

    # -- the run --

    def summarize(
        self,
        document: Document,
        style: SummaryStyle = "brief",
        *,
        on_progress: ProgressCallback | None = None,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> SummaryResult:
        """Summarize ``document``; the final text streams to ``on_text``. Setting ``cancel`` (the request's own
        event, from any thread) or calling ``cancel()`` returns the partial result (``cancelled=True``) instead
        of raising."""
        style = summary_style(style)  # callers holding a plain string (a menu, argparse) are checked here
        context_size = self.context_size
        if context_size < MIN_CONTEXT:
            raise UserError(
                f"The context of {context_size} tokens is too small to summarize with; choose at least "
                f"{MIN_CONTEXT} tokens in Settings."
            )
        self._stop.clear()
        run = _Run(self, document, style, on_progress, on_text, cancel)
        try:
            run.execute()
        except _Stopped:
            run.result.cancelled = True
        run.result.seconds = time.perf_counter() - run.started
        if not run.result.cancelled:
            run.report("done", force_complete=True)
        return run.result


class _Run:
    """One summary in progress: the state shared by its steps."""

    def __init__(
        self,
        summarizer: Summarizer,
        document: Document,
        style: SummaryStyle,
        on_progress: ProgressCallback | None,
        on_text: TextCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.summarizer = summarizer
        self.request_cancel = cancel
        self.engine = summarizer.engine
        self.settings = summarizer.settings
        self.cache = summarizer.cache
        self.document = document
        self.style: SummaryStyle = style
        self.on_progress = on_progress
        self.on_text = on_text
        self.started = time.perf_counter()
        self.context_size = summarizer.context_size
        self.final_max = self.settings.final_max_tokens(style, self.context_size)
        self.pace = SummaryPace()
        self.part_reported_at: float | None = (
            None  # when progress within the part under way was last reported
        )
        self.done = 0
        self.total = 1
        self.stage: SummaryStage = "sections"
        self.remaining_prompt_tokens = 0
        info = self.engine.model
        assert info is not None
        self.model_info = info
        # A built-in template makes other prompts than the file's own (the key of a file's own stays as before).
        template = f"|template:{info.builtin_template}" if info.builtin_template else ""
        self.model_identity = f"{info.path.name}|{info.file_size}|{info.quantization}{template}"
        self.chunk_budget = summarizer.chunk_budget()
        try:  # a long document takes a while to tokenize: a cancel must not wait for all of it
            self.chunks = chunk_document(
                document, self.engine.count_tokens, self.chunk_budget, should_stop=self.stopped
            )
            self.stopped_while_chunking = False
        except ChunkingStopped:
            self.chunks = []
            self.stopped_while_chunking = True
        self.result = SummaryResult(
            document_name=document.name,
            style=style,
            text="",
            method="hierarchical",
            chunk_count=len(self.chunks),
            document_tokens=sum(c.tokens for c in self.chunks),
            context_size=self.context_size,
        )

    # -- bookkeeping --

    def stopped(self) -> bool:
        """Whether this run was cancelled, through its summarizer or through its request's event."""
        request = self.request_cancel
        return self.summarizer.cancel_requested or (request is not None and request.is_set())

    def key(self, kind: str, *parts: object) -> str:
        settings = asdict(self.settings)
        return cache_key(
            PROMPT_VERSION, kind, self.document.content_hash, self.model_identity, settings, *parts
        )

    def cached(self, key: str) -> str | None:
        if self.cache is None:
            return None
        text = self.cache.get(key)
        if text is not None:
            self.result.cache_hits += 1
        return text

    def store(self, key: str, text: str) -> None:
        """Keep ``text`` for the next run; an empty one too, so that a part the model wrote nothing for is not
        asked again (the same model, template and settings answer it the same way)."""
        if self.cache is not None:
            self.cache.put(key, text)

    def written(self, parts: list[PartSummary]) -> list[PartSummary]:
        """The parts the model wrote something for: the others would only be empty headings in the prompts built
        on them. None at all ends the summary with a sentence."""
        kept = [part for part in parts if part.text]
        if not kept:
            raise NothingWrittenError(self.nothing_written())
        if len(kept) < len(parts):
            log.warning(
                "the model wrote nothing for %d of %d parts of %s; they are left out",
                len(parts) - len(kept),
                len(parts),
                self.document.name,
            )
        return kept

    def nothing_written(self) -> str:
        info = self.model_info
        template = (
            f"the built-in {BUILTIN_TEMPLATES[info.builtin_template].title} chat template"
            if info.builtin_template in BUILTIN_TEMPLATES
            else "its chat template"
        )
        return (
            f"{info.display_name} wrote nothing when asked to summarize {self.document.name}, so there is no "
            f"summary. It may be a base model, not made to follow instructions, or not understand {template}: "
            "try another model, or choose another chat template for this one."
        )

    def report(self, stage: SummaryStage, *, force_complete: bool = False) -> None:
        self.stage = stage
        if force_complete:
            self.total = max(self.done, 1)
            self.done = self.total
        self.total = max(self.total, self.done)
        if self.on_progress is None:
            return
        remaining_calls = self.total - self.done
        eta = (
            0.0
            if force_complete
            else self.pace.eta(
                self.remaining_prompt_tokens, remaining_calls, self.settings.section_max_tokens
            )
        )
        part = self.pace.part
        progress = SummaryProgress(stage, self.done, self.total, eta, self.result.cache_hits)
        if part is not None:
            progress = replace(
                progress,
                part_done=part.share_done(self.pace),
                part_read=part.share_read,
                words_written=part.words if part.writing else None,
            )
        try:
            self.on_progress(progress)
        except Exception:  # a broken progress bar must not cost the summary
            log.exception("summary progress listener failed")

    def report_within_part(self) -> None:
        """Progress inside the part under way: the first news of it at once, then every PART_REPORT_SECONDS."""
        now = time.monotonic()
        if self.part_reported_at is None or now - self.part_reported_at >= PART_REPORT_SECONDS:
            self.part_reported_at = now
            self.report(self.stage)

    def on_prompt_read(self, done: int, total: int) -> None:
        part = self.pace.part
        if part is not None:
            part.read(done, total)
            self.report_within_part()

    def generate(
        self, stage: str, messages: list[ChatMessage], max_tokens: int, on_text: TextCallback | None = None
    ) -> str:
        """One request to the model, asked once more if it wrote nothing (see RETRY_TEMPERATURE); raises
        _Stopped on a cancel. Partial text still reached ``on_text``. "" when both answers were empty."""
        sampling = SamplingOptions(
            temperature=self.settings.temperature,
            top_k=40,
            top_p=0.95,
            min_p=0.05,
            repeat_penalty=self.settings.repeat_penalty,
            max_tokens=max_tokens,
        )
        text = self._ask(stage, messages, sampling, on_text)
        if text:
            return text
        log.info("the model wrote nothing for a %s part of %s; asking once more", stage, self.document.name)
        retry = replace(sampling, temperature=max(RETRY_TEMPERATURE, sampling.temperature), seed=RETRY_SEED)
        return self._ask(stage, messages, retry, on_text)

    def _ask(
        self,
        stage: str,
        messages: list[ChatMessage],
        sampling: SamplingOptions,
        on_text: TextCallback | None,
    ) -> str:
        if self.stopped():
            raise _Stopped
        part = self.pace.begin_part(self.summarizer.prompt_tokens(messages), sampling.max_tokens)
        self.part_reported_at = None
        try:
            # The request's event goes to the engine, which checks it between tokens.
            reply = self.engine.chat(
                messages, sampling, cancel=self.request_cancel, prompt_progress=self.on_prompt_read
            )
            # chat() clears the engine's own cancel flag; a cancel() that landed just before it must still count.
            if self.stopped():
                self.engine.cancel()
            for piece in reply:
                if on_text is not None:
                    on_text(piece)
                part.wrote(piece, reply.stats)
                self.report_within_part()
        finally:
            self.pace.end_part()
        stats = reply.stats
        self.result.calls.append(
            CallRecord(
                stage,
                stats.prompt_tokens,
                stats.evaluated_tokens,
                stats.generated_tokens,
                stats.total_seconds,
                stats.context_size,
                stats.finish_reason,
            )
        )
        if stats.finish_reason == "cancelled" or self.stopped():
            raise _Stopped
        self.pace.record(stats)
        return reply.text.strip()

    def generate_part(self, stage: str, messages: list[ChatMessage], max_tokens: int) -> str:
        """A section or combined summary: one cut off at the length limit loses its unfinished sentence, which
        would otherwise end mid-word in the prompts built from it."""
        text = self.generate(stage, messages, max_tokens)
        if self.result.calls[-1].finish_reason == "length":
            text = whole_sentences(text)
        return text

    def write_final(self, key: str, messages: list[ChatMessage]) -> None:
        """The final summary, streamed: from the cache when this exact request was answered before."""
        cached = self.cached(key)
        if cached is not None:
            self.emit(cached)
        else:
            self.generate("final", messages, self.final_max, self.emit)
            # As streamed, so that a run from the cache shows exactly what this one did.
            self.store(key, self.result.text if self.result.text.strip() else "")
        if not self.result.text.strip():
            raise NothingWrittenError(self.nothing_written())

    def emit(self, text: str) -> None:
        self.result.text += text
        if self.on_text is not None:
            self.on_text(text)

    # -- steps --

    def execute(self) -> None:
        if self.stopped_while_chunking:
            raise _Stopped
        whole_tokens = self.result.document_tokens
        if whole_tokens + self.final_max + 64 <= self.context_size:
            marked = marked_text(self.document)
            if self.style == "points":
                if self._points_one_pass():
                    return
            elif self._fits(one_pass_prompt(self.style, marked), self.final_max):
                self._one_pass(marked)
                return
        self._map()
        self._reduce_and_finish()

    def _fits(self, messages: Sequence[ChatMessage], answer_tokens: int) -> bool:
        return self.summarizer.fits(messages, answer_tokens)

    def _one_pass(self, marked: str) -> None:
        self.result.method = "one pass"
        self.total = 1
        self.remaining_prompt_tokens = self.result.document_tokens
        self.report("final")
        messages = one_pass_prompt(self.style, marked)
        self.result.final_prompt_tokens = self.summarizer.prompt_tokens(messages)
        key = self.key("one pass", self.style)
        self.write_final(key, messages)
        self.result.visited_chunk_ids = [c.index for c in self.chunks]
        self.done = 1

    def _points_one_pass(self) -> bool:
        """Key points of a short document: one point per part of roughly equal size, each named by its pages."""
        target = max(64, math.ceil(self.result.document_tokens / self.settings.max_points))
        try:
            parts = chunk_document(
                self.document,
                self.engine.count_tokens,
                min(target, self.chunk_budget),
                should_stop=self.stopped,
            )
        except ChunkingStopped:
            raise _Stopped from None
        parts_as_summaries = [
            PartSummary(p.label, p.text, [c.index for c in self.chunks], p.first_section, p.last_section)
            for p in parts
        ]
        if len(parts_as_summaries) > self.settings.max_points * 2:
            return False
        self.result.method = "one pass"
        self.total = len(parts_as_summaries)
        self.remaining_prompt_tokens = self.result.document_tokens
        self._write_points(parts_as_summaries)
        self.result.visited_chunk_ids = [c.index for c in self.chunks]
        return True

    def _map(self) -> None:
        self.stage = "sections"
        self.total = len(self.chunks) + self._estimate_after_map(len(self.chunks))
        self.remaining_prompt_tokens = self.result.document_tokens
        self.report("sections")
        for chunk in self.chunks:
            key = self.key("section", self.chunk_budget, chunk.index, cache_key(chunk.text))
            text = self.cached(key)
            hit = text is not None
            if text is None:
                text = self.generate_part("section", map_prompt(chunk.text), self.settings.section_max_tokens)
                self.store(key, text)
            if not text:
                self.result.empty_parts += 1
            self.result.section_summaries.append(
                PartSummary(chunk.label, text, [chunk.index], chunk.first_section, chunk.last_section, 0, hit)
            )
            self.result.visited_chunk_ids.append(chunk.index)
            self.done += 1
            self.remaining_prompt_tokens -= chunk.tokens
            self.report("sections")

    def _estimate_after_map(self, count: int) -> int:
        """Calls still needed after the section summaries, assuming each one uses its full length."""
        per_item = max(self.settings.section_max_tokens, self.settings.combine_max_tokens) + 12
        room = self.context_size - 80 - self.settings.combine_max_tokens
        per_group = max(2, room // per_item)
        calls = 0
        if self.style == "points":
            while math.ceil(count / self.settings.max_points) > per_group:
                count = math.ceil(count / per_group)
                calls += count
            return calls + min(count, self.settings.max_points)
        while count * per_item + 80 + self.final_max > self.context_size:
            count = math.ceil(count / per_group)
            calls += count
        return calls + 1

    def _group(
        self, parts: list[PartSummary], fits: Callable[[list[PartSummary]], bool], most: int
    ) -> list[list[PartSummary]]:
        """Consecutive groups of at most ``most`` parts, each as large as ``fits`` allows."""
        groups: list[list[PartSummary]] = []
        current: list[PartSummary] = []
        for part in parts:
            if current and (len(current) >= most or not fits([*current, part])):
                groups.append(current)
                current = []
            current.append(part)
        if current:
            groups.append(current)
        return groups

    def _merged(self, group: Sequence[PartSummary], text: str, level: int, cached: bool) -> PartSummary:
        first, last = group[0].first_section, group[-1].last_section
        return PartSummary(
            span_label(self.document.sections[first : last + 1]),
            text,
            [i for p in group for i in p.chunk_ids],
            first,
            last,
            level,
            cached,
        )

    def _combine_level(self, parts: list[PartSummary], level: int, most: int) -> list[PartSummary]:
        answer_max = self.settings.combine_max_tokens
        groups = self._group(parts, lambda g: self._fits(combine_prompt(g), answer_max), most)
        if len(groups) >= len(parts):
            raise AssertionError("combining made no progress: the context is too small for two summaries")
        self.total = self.done + len(groups) + self._estimate_after_map(len(groups))
        self.remaining_prompt_tokens = sum(len(p.text) // 4 for p in parts)
        self.report("combining")
        combined: list[PartSummary] = []
        for group in groups:
            if len(group) == 1:
                combined.append(group[0])
                self.done += 1
                continue
            key = self.key("combine", level, [p.text for p in group])
            text = self.cached(key)
            hit = text is not None
            if text is None:
                text = self.generate_part("combine", combine_prompt(group), answer_max)
                self.store(key, text)
            if not text:
                self.result.empty_parts += 1
            combined.append(self._merged(group, text, level, hit))
            self.done += 1
            self.remaining_prompt_tokens -= sum(len(p.text) // 4 for p in group)
            self.report("combining")
        return combined

    def _reduce_and_finish(self) -> None:
        parts = self.written(self.result.section_summaries)
        level = 0
        if self.style == "points":
            limit = self.settings.max_points
            while True:
                size = math.ceil(len(parts) / limit)
                groups = self._group(
                    parts, lambda g: self._fits(point_prompt(listing(g)), self.final_max), size
                )
                if len(groups) <= limit * 2:
                    break
                level += 1
                parts = self.written(self._combine_level(parts, level, most=len(parts)))
            self.result.levels = level
            self.total = self.done + len(groups)
            self._write_points(
                [self._merged(g, listing(g), level, False) if len(g) > 1 else g[0] for g in groups]
            )
            return
        while not self._fits(final_prompt(self.style, parts), self.final_max):
            level += 1
            parts = self.written(self._combine_level(parts, level, most=len(parts)))
        self.result.levels = level
        messages = final_prompt(self.style, parts)
        self.result.final_prompt_tokens = self.summarizer.prompt_tokens(messages)
        self.remaining_prompt_tokens = self.result.final_prompt_tokens
        self.total = self.done + 1
        self.report("final")
        key = self.key("final", self.style, [p.text for p in parts])
        self.write_final(key, messages)
        self.done += 1

    def _write_points(self, parts: list[PartSummary]) -> None:
        """One streamed line per part: "- [pages 3-5] the point", the reference written by us, not the model. A
        point the model wrote nothing for leaves no line; none at all ends the summary with a sentence."""
        self.report("final")
        lines = empty = 0
        for part in parts:
            messages = point_prompt(part.text)
            tokens = self.summarizer.prompt_tokens(messages)
            self.result.final_prompt_tokens = max(self.result.final_prompt_tokens, tokens)
            labelled = _LabelledLine(self.emit, ("\n" if lines else "") + f"- [{part.label}] ")
            key = self.key("point", part.label, cache_key(part.text))
            cached = self.cached(key)
            if cached is not None:
                labelled(cached)
            else:
                line = OneLinePoint(labelled)
                try:
                    self.generate("final", messages, self.final_max, line)
                finally:
                    line.finish()  # a cancelled point still shows what was written of it
                self.store(key, line.text if line.text.strip() else "")
            if labelled.started:
                lines += 1
            else:
                empty += 1
            self.done += 1
            self.remaining_prompt_tokens = max(0, self.remaining_prompt_tokens - tokens)
            self.report("final")
        self.result.empty_parts += empty
        if not lines:
            raise NothingWrittenError(self.nothing_written())
        if empty:
            log.warning(
                "the model wrote nothing for %d of %d key points of %s", empty, len(parts), self.document.name
            )


class _LabelledLine:
    """Streams a key point after its label, which waits for the point's first visible character: a point the
    model wrote nothing for leaves no line with a label and nothing after it."""

    def __init__(self, emit: TextCallback, label: str) -> None:
        self.emit = emit
        self.label = label
        self.held = ""
        self.started = False

    def __call__(self, piece: str) -> None:
        if self.started:
            self.emit(piece)
            return
        self.held += piece
        if self.held.strip():
            self.started = True
            self.emit(self.label + self.held.lstrip())
