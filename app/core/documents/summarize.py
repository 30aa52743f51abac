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

Section summaries are cached on disk by (document text hash, model file, settings, chunk text), not by style:
asking for another style, or running again after a cancel, reuses them. The final answer streams through a
callback. Progress (parts done / total, ETA) is reported after every part, and ``cancel()`` from any thread
stops within a moment, keeping the section summaries finished so far.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.core.documents.reader import Document, Section
from app.core.errors import NoModelLoadedError, UserError
from app.core.llm.engine import ChatMessage, Engine, ReplyStats
from app.core.modes import SamplingOptions
from app.core.paths import app_paths

log = logging.getLogger(__name__)

SummaryStyle = Literal["brief", "detailed", "points"]
STYLES: tuple[SummaryStyle, ...] = ("brief", "detailed", "points")
STYLE_LABELS: dict[SummaryStyle, str] = {"brief": "Brief", "detailed": "Detailed", "points": "Key points"}

# Bumped whenever a prompt below changes, so summaries made with old prompts are not served from the cache.
PROMPT_VERSION = 2
# Small models follow one short instruction placed after the text far better than a long preamble.
SYSTEM_PROMPT = "You summarize text accurately and briefly."
# Below this a chunk plus its summary leaves too little room for text worth summarizing.
MIN_CONTEXT = 512
# Tokens kept free beyond each prompt and answer, for the chat template's closing tokens.
SAFETY_TOKENS = 8
# A chunk that has reached this share of its budget ends at the next section or page rather than mid-way.
SECTION_CUT_FILL = 0.85
# Paragraphs are joined with a blank line: about one token each.
SEPARATOR_TOKENS = 2


@dataclass(frozen=True)
class SummarySettings:
    """What shapes a summary; any change here makes new cache entries rather than reusing old ones."""

    # Two or three sentences. Near a full context a small model writes only ~25 tokens/s, so each token of a
    # section summary costs what reading ~5 tokens of the document does: longer ones would make the summary
    # cost far more than the reading.
    section_max_tokens: int = 72
    # A combined summary stands for several sections: three or four sentences.
    combine_max_tokens: int = 96
    point_max_tokens: int = 48
    brief_max_tokens: int = 200
    detailed_max_tokens: int = 480
    max_points: int = 8
    temperature: float = 0.0
    repeat_penalty: float = 1.15

    def final_max_tokens(self, style: SummaryStyle, context_size: int) -> int:
        wanted = {"brief": self.brief_max_tokens, "detailed": self.detailed_max_tokens}.get(
            style, self.point_max_tokens
        )
        return max(32, min(wanted, context_size // 3))


@dataclass(frozen=True)
class Chunk:
    """A run of consecutive paragraphs that fits one prompt; ``first_section``..``last_section`` index the
    document's sections it draws from."""

    index: int
    label: str
    text: str
    tokens: int
    first_section: int
    last_section: int


@dataclass
class PartSummary:
    """A summary of consecutive chunks (one chunk at level 0, combined ones above)."""

    label: str
    text: str
    chunk_ids: list[int]
    first_section: int
    last_section: int
    level: int = 0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SummaryProgress:
    stage: Literal["sections", "combining", "final", "done"]
    done: int
    total: int
    eta_seconds: float | None  # None until one part has been timed
    cache_hits: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


@dataclass(frozen=True)
class CallRecord:
    """One request to the model, for the statistics and the tests' budget checks."""

    stage: str
    prompt_tokens: int
    evaluated_tokens: int
    generated_tokens: int
    seconds: float
    context_size: int
    finish_reason: str


@dataclass
class SummaryResult:
    document_name: str
    style: SummaryStyle
    text: str
    method: Literal["one pass", "hierarchical"]
    chunk_count: int
    document_tokens: int
    context_size: int
    visited_chunk_ids: list[int] = field(default_factory=list)
    section_summaries: list[PartSummary] = field(default_factory=list)
    levels: int = 0  # combining levels above the section summaries
    cancelled: bool = False
    cache_hits: int = 0
    calls: list[CallRecord] = field(default_factory=list)
    final_prompt_tokens: int = 0
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.cancelled and sorted(self.visited_chunk_ids) == list(range(self.chunk_count))

    @property
    def generated_tokens(self) -> int:
        return sum(c.generated_tokens for c in self.calls)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the history store (calls are statistics, not worth keeping)."""
        return {
            "document_name": self.document_name,
            "style": self.style,
            "text": self.text,
            "method": self.method,
            "chunk_count": self.chunk_count,
            "document_tokens": self.document_tokens,
            "context_size": self.context_size,
            "visited_chunk_ids": list(self.visited_chunk_ids),
            "section_summaries": [s.to_dict() for s in self.section_summaries],
            "levels": self.levels,
            "cancelled": self.cancelled,
            "cache_hits": self.cache_hits,
            "final_prompt_tokens": self.final_prompt_tokens,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SummaryResult:
        return cls(
            document_name=str(data["document_name"]),
            style=data["style"],
            text=str(data["text"]),
            method=data["method"],
            chunk_count=int(data["chunk_count"]),
            document_tokens=int(data["document_tokens"]),
            context_size=int(data["context_size"]),
            visited_chunk_ids=[int(i) for i in data.get("visited_chunk_ids", [])],
            section_summaries=[PartSummary(**s) for s in data.get("section_summaries", [])],
            levels=int(data.get("levels", 0)),
            cancelled=bool(data.get("cancelled", False)),
            cache_hits=int(data.get("cache_hits", 0)),
            final_prompt_tokens=int(data.get("final_prompt_tokens", 0)),
            seconds=float(data.get("seconds", 0.0)),
        )


ProgressCallback = Callable[[SummaryProgress], None]
TextCallback = Callable[[str], None]


# -- chunking ------------------------------------------------------------------------------------------------


def span_label(sections: Sequence[Section]) -> str:
    """A reference a person can follow: "page 4", "pages 4-7", "lines 1-240", 'section "A" to section "B"'."""
    if not sections:
        return "document"
    pages = [s.page for s in sections if s.page is not None]
    if len(pages) == len(sections):
        low, high = min(pages), max(pages)
        return f"page {low}" if low == high else f"pages {low}-{high}"
    first, last = sections[0].label, sections[-1].label
    if first == last:
        return first
    first_lines, last_lines = _LINES.match(first), _LINES.match(last)
    if first_lines and last_lines:
        return f"lines {first_lines.group(1)}-{last_lines.group(2) or last_lines.group(1)}"
    return f"{first} to {last}"


_LINES = re.compile(r"^lines? (\d+)(?:-(\d+))?$")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


def chunk_document(
    document: Document,
    count_tokens: Callable[[str], int],
    max_tokens: int,
    *,
    keep_sections_apart: bool = False,
) -> list[Chunk]:
    """Cut ``document`` into chunks of at most ``max_tokens`` tokens (as ``count_tokens`` counts them).

    Cuts fall between paragraphs, and between sections (pages, headings) once a chunk is mostly full; a
    paragraph longer than the budget is cut between sentences, and a sentence longer than it between words.
    With ``keep_sections_apart`` no chunk spans two sections, so each has exactly one page or heading.
    """
    if max_tokens < 16:
        raise ValueError("a chunk budget under 16 tokens cannot hold a sentence")
    units: list[tuple[int, str, int]] = []  # (section index, text, tokens)
    for section_index, section in enumerate(document.sections):
        for paragraph in re.split(r"\n\s*\n", section.text):
            if paragraph.strip():
                units.extend(
                    (section_index, piece, tokens)
                    for piece, tokens in _fit_pieces(paragraph.strip(), count_tokens, max_tokens)
                )
    chunks: list[Chunk] = []
    pending = deque(units)
    while pending:
        group = [pending.popleft()]
        total = group[0][2]
        while pending:
            unit = pending[0]
            if unit[0] != group[-1][0] and (keep_sections_apart or total >= SECTION_CUT_FILL * max_tokens):
                break
            if total + SEPARATOR_TOKENS + unit[2] <= max_tokens:
                group.append(pending.popleft())
                total += SEPARATOR_TOKENS + unit[2]
                continue
            if total < SECTION_CUT_FILL * max_tokens:
                # A mostly empty chunk takes the sentences of the next paragraph that still fit: PDF pages often
                # come as one long paragraph, and whole ones would leave chunks half full.
                split = _split_to_fit(unit[1], count_tokens, max_tokens - total - SEPARATOR_TOKENS)
                if split is not None:
                    (head, head_tokens), (rest, rest_tokens) = split
                    group.append((unit[0], head, head_tokens))
                    total += SEPARATOR_TOKENS + head_tokens
                    pending[0] = (unit[0], rest, rest_tokens)
            break
        text = "\n\n".join(u[1] for u in group)
        exact = count_tokens(text) if len(group) > 1 else group[0][2]
        while exact > max_tokens and len(group) > 1:  # joining can tokenize a little differently
            pending.appendleft(group.pop())
            text = "\n\n".join(u[1] for u in group)
            exact = count_tokens(text)
        first, last = group[0][0], group[-1][0]
        chunks.append(
            Chunk(len(chunks), span_label(document.sections[first : last + 1]), text, exact, first, last)
        )
    return chunks


def _split_to_fit(
    text: str, count_tokens: Callable[[str], int], room: int
) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """The longest run of whole sentences from the start of ``text`` within ``room`` tokens, and the rest."""
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    if len(sentences) < 2 or room < 16:
        return None
    taken = 0
    used = 0
    for sentence in sentences[:-1]:
        cost = count_tokens(sentence) + 1
        if used + cost > room:
            break
        used += cost
        taken += 1
    while taken:
        head = " ".join(sentences[:taken])
        head_tokens = count_tokens(head)
        if head_tokens <= room:
            rest = " ".join(sentences[taken:])
            return (head, head_tokens), (rest, count_tokens(rest))
        taken -= 1
    return None


def _fit_pieces(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> list[tuple[str, int]]:
    tokens = count_tokens(text)
    if tokens <= max_tokens:
        return [(text, tokens)]
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    if len(sentences) <= 1:
        return _split_words(text, count_tokens, max_tokens)
    pieces: list[tuple[str, int]] = []
    current: list[str] = []
    current_tokens = 0
    for sentence in sentences:
        sentence_tokens = count_tokens(sentence)
        if sentence_tokens > max_tokens:
            if current:
                pieces.append(_measured(" ".join(current), count_tokens))
                current, current_tokens = [], 0
            pieces.extend(_split_words(sentence, count_tokens, max_tokens))
            continue
        if current and current_tokens + 1 + sentence_tokens > max_tokens:
            pieces.append(_measured(" ".join(current), count_tokens))
            current, current_tokens = [], 0
        current.append(sentence)
        current_tokens += sentence_tokens + (1 if len(current) > 1 else 0)
    if current:
        pieces.append(_measured(" ".join(current), count_tokens))
    fitted: list[tuple[str, int]] = []
    for piece, piece_tokens in pieces:  # a join can exceed the sum by a token: split again if so
        fitted.extend(
            [(piece, piece_tokens)]
            if piece_tokens <= max_tokens
            else _split_words(piece, count_tokens, max_tokens)
        )
    return fitted


def _measured(text: str, count_tokens: Callable[[str], int]) -> tuple[str, int]:
    return text, count_tokens(text)


def _split_words(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> list[tuple[str, int]]:
    """Halve until each piece fits: for text with no sentence ends (tables, code, run-on lines)."""
    tokens = count_tokens(text)
    if tokens <= max_tokens:
        return [(text, tokens)]
    words = text.split(" ")
    if len(words) < 2:
        middle = len(text) // 2
        halves = [text[:middle], text[middle:]]
    else:
        middle = len(words) // 2
        halves = [" ".join(words[:middle]), " ".join(words[middle:])]
    return [
        piece for half in halves if half.strip() for piece in _split_words(half, count_tokens, max_tokens)
    ]


# -- the cache -----------------------------------------------------------------------------------------------


class SummaryCache:
    """Finished summaries on disk, keyed by a hash of everything that produced them.

    SQLite, one short connection per operation: the summarizer runs on the engine thread while the window may
    read from another, and a damaged cache file is moved aside and started afresh (it only holds copies).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or app_paths().summary_cache_dir / "summaries.sqlite3"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=10)
        try:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS summaries (key TEXT PRIMARY KEY, text TEXT NOT NULL, created REAL NOT NULL)"
            )
        except sqlite3.DatabaseError:
            connection.close()
            log.warning("summary cache %s is damaged; starting a new one", self.path)
            self.path.replace(self.path.with_suffix(".damaged"))
            connection = sqlite3.connect(self.path, timeout=10)
            connection.execute(
                "CREATE TABLE summaries (key TEXT PRIMARY KEY, text TEXT NOT NULL, created REAL NOT NULL)"
            )
        return connection

    def get(self, key: str) -> str | None:
        try:
            connection = self._connect()
            try:
                row = connection.execute("SELECT text FROM summaries WHERE key = ?", (key,)).fetchone()
            finally:
                connection.close()
        except (sqlite3.Error, OSError):
            log.warning("summary cache read failed", exc_info=True)
            return None
        return str(row[0]) if row else None

    def put(self, key: str, text: str) -> None:
        try:
            connection = self._connect()
            try:
                with connection:
                    connection.execute(
                        "INSERT OR REPLACE INTO summaries (key, text, created) VALUES (?, ?, ?)",
                        (key, text, time.time()),
                    )
            finally:
                connection.close()
        except (sqlite3.Error, OSError):
            log.warning("summary cache write failed", exc_info=True)

    def count(self) -> int:
        try:
            connection = self._connect()
            try:
                return int(connection.execute("SELECT COUNT(*) FROM summaries").fetchone()[0])
            finally:
                connection.close()
        except (sqlite3.Error, OSError):
            return 0


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


# -- prompts -------------------------------------------------------------------------------------------------


def _messages(user: str) -> list[ChatMessage]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _map_prompt(text: str) -> list[ChatMessage]:
    return _messages(f"{text}\n\nSummarize the text above in two or three sentences.")


def _listing(parts: Sequence[PartSummary]) -> str:
    return "\n\n".join(f"[{p.label}] {p.text}" for p in parts)


def _combine_prompt(parts: Sequence[PartSummary]) -> list[ChatMessage]:
    return _messages(
        f"Summaries of consecutive parts of a document:\n\n{_listing(parts)}\n\n"
        "Combine them into one summary of three or four sentences."
    )


_FINAL_ASK: dict[SummaryStyle, str] = {
    "brief": "Write a brief summary of the whole document in three to five sentences.",
    "detailed": "Write a detailed summary of the whole document. Cover every part in order and keep names and numbers.",
    "points": "What is the most important point of the text above? Answer in one sentence.",
}


def _final_prompt(style: SummaryStyle, parts: Sequence[PartSummary]) -> list[ChatMessage]:
    return _messages(
        f"Summaries of the parts of a document, in order:\n\n{_listing(parts)}\n\n{_FINAL_ASK[style]}"
    )


def _one_pass_prompt(style: SummaryStyle, text: str) -> list[ChatMessage]:
    ask = _FINAL_ASK[style].replace("the whole document", "the text above")
    return _messages(f"{text}\n\n{ask}")


def _point_prompt(text: str) -> list[ChatMessage]:
    return _messages(f"{text}\n\n{_FINAL_ASK['points']}")


def _marked_text(document: Document) -> str:
    """The whole text with a [page N] / [section] marker before each part, so an answer can refer to them."""
    if len(document.sections) < 2:
        return document.text
    return "\n\n".join(f"[{s.label}]\n{s.text}" for s in document.sections if s.text)


def whole_sentences(text: str) -> str:
    """``text`` up to its last sentence end, unless that would drop more than half of it."""
    ends = [m.end() for m in re.finditer(r"[.!?](?:[\"')\]]*)(?=\s|$)", text)]
    if ends and ends[-1] >= len(text) // 2:
        return text[: ends[-1]].strip()
    return text.strip()


class _Stopped(Exception):
    """A cancel, unwinding a run; control flow that never leaves this module."""


# -- the summarizer ------------------------------------------------------------------------------------------


class _Pace:
    """Learns this machine's prompt and generation speeds from the parts done, to estimate the rest."""

    def __init__(self) -> None:
        self.evaluated = 0
        self.eval_seconds = 0.0
        self.generated = 0
        self.generate_seconds = 0.0

    def record(self, stats: ReplyStats) -> None:
        first = min(stats.time_to_first_token, stats.total_seconds)
        self.evaluated += stats.evaluated_tokens
        self.eval_seconds += first
        self.generated += stats.generated_tokens
        self.generate_seconds += max(0.0, stats.total_seconds - first)

    def eta(self, prompt_tokens: int, generated_tokens: int) -> float | None:
        if not self.evaluated or self.eval_seconds <= 0:
            return None
        seconds = prompt_tokens * self.eval_seconds / self.evaluated
        if self.generated and self.generate_seconds > 0:
            seconds += generated_tokens * self.generate_seconds / self.generated
        return seconds


class Summarizer:
    """Summarizes documents with one loaded Engine, on the engine's thread; ``cancel()`` from any thread."""

    def __init__(
        self,
        engine: Engine,
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

    # -- sizes --

    @property
    def context_size(self) -> int:
        info = self.engine.model
        if info is None:
            raise NoModelLoadedError("No model is loaded. Choose a model first, then summarize.")
        return info.context_size

    def _prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.engine.tokenize_messages(messages)[0])

    def _fits(self, messages: Sequence[ChatMessage], answer_tokens: int) -> bool:
        return self._prompt_tokens(messages) + answer_tokens + SAFETY_TOKENS <= self.context_size

    def chunk_budget(self) -> int:
        """Tokens of document text per section prompt: the context less the instructions and the answer."""
        overhead = self._prompt_tokens(_map_prompt(""))
        return self.context_size - overhead - self.settings.section_max_tokens - SAFETY_TOKENS

    def chunks(self, document: Document) -> list[Chunk]:
        return chunk_document(document, self.engine.count_tokens, self.chunk_budget())

    # -- the run --

    def summarize(
        self,
        document: Document,
        style: SummaryStyle = "brief",
        *,
        on_progress: ProgressCallback | None = None,
        on_text: TextCallback | None = None,
    ) -> SummaryResult:
        """Summarize ``document``; the final text streams to ``on_text``. A cancel returns the partial result
        (``cancelled=True``) instead of raising."""
        if style not in STYLES:
            raise UserError(f"There is no summary style called {style!r}; choose brief, detailed or points.")
        context_size = self.context_size
        if context_size < MIN_CONTEXT:
            raise UserError(
                f"The context of {context_size} tokens is too small to summarize with; choose at least "
                f"{MIN_CONTEXT} tokens in Settings."
            )
        self._stop.clear()
        run = _Run(self, document, style, on_progress, on_text)
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
    ) -> None:
        self.summarizer = summarizer
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
        self.pace = _Pace()
        self.done = 0
        self.total = 1
        self.stage: Literal["sections", "combining", "final", "done"] = "sections"
        self.remaining_prompt_tokens = 0
        info = self.engine.model
        assert info is not None
        self.model_identity = f"{info.path.name}|{info.file_size}|{info.quantization}"
        self.chunk_budget = summarizer.chunk_budget()
        self.chunks = chunk_document(document, self.engine.count_tokens, self.chunk_budget)
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

    def key(self, kind: str, *parts: object) -> str:
        settings = asdict(self.settings)
        return _digest(
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
        if self.cache is not None and text:
            self.cache.put(key, text)

    def report(
        self, stage: Literal["sections", "combining", "final", "done"], *, force_complete: bool = False
    ) -> None:
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
                self.remaining_prompt_tokens, remaining_calls * self.settings.section_max_tokens
            )
        )
        try:
            self.on_progress(SummaryProgress(stage, self.done, self.total, eta, self.result.cache_hits))
        except Exception:  # a broken progress bar must not cost the summary
            log.exception("summary progress listener failed")

    def generate(
        self, stage: str, messages: list[ChatMessage], max_tokens: int, on_text: TextCallback | None = None
    ) -> str:
        """One request to the model; raises _Stopped on a cancel. Partial text still reached ``on_text``."""
        stop = self.summarizer._stop
        if stop.is_set():
            raise _Stopped
        sampling = SamplingOptions(
            temperature=self.settings.temperature,
            top_k=40,
            top_p=0.95,
            min_p=0.05,
            repeat_penalty=self.settings.repeat_penalty,
            max_tokens=max_tokens,
        )
        reply = self.engine.chat(messages, sampling)
        # chat() clears the engine's own cancel flag; a cancel that landed just before it must still count.
        if stop.is_set():
            self.engine.cancel()
        for piece in reply:
            if on_text is not None:
                on_text(piece)
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
        if stats.finish_reason == "cancelled" or stop.is_set():
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
            self.store(key, self.result.text.strip())

    def emit(self, text: str) -> None:
        self.result.text += text
        if self.on_text is not None:
            self.on_text(text)

    # -- steps --

    def execute(self) -> None:
        whole_tokens = self.result.document_tokens
        if whole_tokens + self.final_max + 64 <= self.context_size:
            marked = _marked_text(self.document)
            if self.style == "points":
                if self._points_one_pass():
                    return
            elif self._fits(_one_pass_prompt(self.style, marked), self.final_max):
                self._one_pass(marked)
                return
        self._map()
        self._reduce_and_finish()

    def _fits(self, messages: Sequence[ChatMessage], answer_tokens: int) -> bool:
        return self.summarizer._fits(messages, answer_tokens)

    def _one_pass(self, marked: str) -> None:
        self.result.method = "one pass"
        self.total = 1
        self.remaining_prompt_tokens = self.result.document_tokens
        self.report("final")
        messages = _one_pass_prompt(self.style, marked)
        self.result.final_prompt_tokens = self.summarizer._prompt_tokens(messages)
        key = self.key("one pass", self.style)
        self.write_final(key, messages)
        self.result.visited_chunk_ids = [c.index for c in self.chunks]
        self.done = 1

    def _points_one_pass(self) -> bool:
        """Key points of a short document: one point per part of roughly equal size, each named by its pages."""
        target = max(64, math.ceil(self.result.document_tokens / self.settings.max_points))
        parts = chunk_document(self.document, self.engine.count_tokens, min(target, self.chunk_budget))
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
            key = self.key("section", self.chunk_budget, chunk.index, _digest(chunk.text))
            text = self.cached(key)
            hit = text is not None
            if text is None:
                text = self.generate_part(
                    "section", _map_prompt(chunk.text), self.settings.section_max_tokens
                )
                self.store(key, text)
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
        groups = self._group(parts, lambda g: self._fits(_combine_prompt(g), answer_max), most)
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
                text = self.generate_part("combine", _combine_prompt(group), answer_max)
                self.store(key, text)
            combined.append(self._merged(group, text, level, hit))
            self.done += 1
            self.remaining_prompt_tokens -= sum(len(p.text) // 4 for p in group)
            self.report("combining")
        return combined

    def _reduce_and_finish(self) -> None:
        parts = list(self.result.section_summaries)
        level = 0
        if self.style == "points":
            limit = self.settings.max_points
            while True:
                size = math.ceil(len(parts) / limit)
                groups = self._group(
                    parts, lambda g: self._fits(_point_prompt(_listing(g)), self.final_max), size
                )
                if len(groups) <= limit * 2:
                    break
                level += 1
                parts = self._combine_level(parts, level, most=len(parts))
            self.result.levels = level
            self.total = self.done + len(groups)
            self._write_points(
                [self._merged(g, _listing(g), level, False) if len(g) > 1 else g[0] for g in groups]
            )
            return
        while not self._fits(_final_prompt(self.style, parts), self.final_max):
            level += 1
            parts = self._combine_level(parts, level, most=len(parts))
        self.result.levels = level
        messages = _final_prompt(self.style, parts)
        self.result.final_prompt_tokens = self.summarizer._prompt_tokens(messages)
        self.remaining_prompt_tokens = self.result.final_prompt_tokens
        self.total = self.done + 1
        self.report("final")
        key = self.key("final", self.style, [p.text for p in parts])
        self.write_final(key, messages)
        self.done += 1

    def _write_points(self, parts: list[PartSummary]) -> None:
        """One streamed line per part: "- [pages 3-5] the point", the reference written by us, not the model."""
        self.report("final")
        for number, part in enumerate(parts):
            messages = _point_prompt(part.text)
            tokens = self.summarizer._prompt_tokens(messages)
            self.result.final_prompt_tokens = max(self.result.final_prompt_tokens, tokens)
            self.emit(("\n" if number else "") + f"- [{part.label}] ")
            key = self.key("point", part.label, _digest(part.text))
            cached = self.cached(key)
            if cached is not None:
                self.emit(cached)
            else:
                line = _OneLine(self.emit)
                try:
                    self.generate("final", messages, self.final_max, line)
                finally:
                    line.finish()  # a cancelled point still shows what was written of it
                self.store(key, line.text.strip())
            self.done += 1
            self.remaining_prompt_tokens = max(0, self.remaining_prompt_tokens - tokens)
            self.report("final")


_POINT_PREAMBLE = re.compile(
    r"^(?:the\s+)?(?:single\s+)?(?:most\s+important|main|key|central)\s+point(?:\s+of\s+(?:the|this)\s+text)?"
    r"(?:\s+above)?\s+(?:is|was)\s*(?:that\s+|:\s*)?",
    re.IGNORECASE,
)


class _OneLine:
    """Streams a key point as one line: newlines become spaces, and the "The most important point of the text
    is that" that small models open with is dropped (the first few dozen characters wait to be checked)."""

    HOLD = 90

    def __init__(self, sink: TextCallback) -> None:
        self.sink = sink
        self.held: str | None = ""  # None once the opening has been checked and sent
        self.text = ""

    def __call__(self, piece: str) -> None:
        piece = piece.replace("\n", " ")
        if self.held is None:
            self._send(piece)
            return
        self.held += piece
        if len(self.held) >= self.HOLD:
            self.finish()

    def finish(self) -> None:
        if self.held is None:
            return
        opening = self.held.lstrip()
        self.held = None
        stripped = _POINT_PREAMBLE.sub("", opening, count=1)
        if stripped != opening and stripped:
            stripped = stripped[0].upper() + stripped[1:]
        self._send(stripped)

    def _send(self, piece: str) -> None:
        if piece:
            self.text += piece
            self.sink(piece)
