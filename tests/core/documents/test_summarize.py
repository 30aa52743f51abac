"""Summaries of documents many times longer than the context, with the real test model.

The test model's prose is weak and its wording changes with the CPU; these tests check what the pipeline
promises: every chunk is
read, every prompt fits the context, progress reaches 100 %, a cancel stops at once and keeps what was done,
and the cache makes a second run (or another style) cheap. The context is 512 tokens so that a document eight
times longer stays quick to summarize.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from app.core.documents.document import Document, Section, make_document
from app.core.documents.reader import read_document
from app.core.documents.summarize import NothingWrittenError, Summarizer
from app.core.documents.summary_cache import SummaryCache
from app.core.documents.summary_types import SummaryProgress, SummaryResult, SummarySettings, SummaryStyle
from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine, Reply
from app.core.llm.load_options import LoadOptions
from app.core.modes import SamplingOptions
from tests.fixtures.documents import build_docx, build_pdf, travelogue_pages

CONTEXT = 512
PAGES = 24
CANCEL_PAGES = 9
# Short section summaries keep the test quick; the pipeline does not depend on their length.
SETTINGS = SummarySettings(section_max_tokens=48, brief_max_tokens=120)


@dataclass
class Run:
    result: SummaryResult
    progress: list[SummaryProgress]
    streamed: str


def summarize(summarizer: Summarizer, document: Document, style: SummaryStyle = "brief") -> Run:
    progress: list[SummaryProgress] = []
    pieces: list[str] = []
    result = summarizer.summarize(document, style, on_progress=progress.append, on_text=pieces.append)
    return Run(result, progress, "".join(pieces))


def assert_within_context(result: SummaryResult) -> None:
    assert result.calls, "no model call was made"
    for call in result.calls:
        assert call.context_size == CONTEXT
        assert call.prompt_tokens <= CONTEXT
        assert call.prompt_tokens + call.generated_tokens <= CONTEXT
    assert 0 < result.final_prompt_tokens <= CONTEXT


@pytest.fixture(scope="module")
def small_engine(model_path: Path) -> Iterator[Engine]:
    engine = Engine()
    engine.load(model_path, LoadOptions(context_size=CONTEXT))
    yield engine
    engine.unload()


@pytest.fixture(scope="module")
def long_pdf(tmp_path_factory: pytest.TempPathFactory) -> Document:
    return read_document(
        build_pdf(tmp_path_factory.mktemp("long") / "travelogue.pdf", travelogue_pages(PAGES))
    )


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache") / "summaries.sqlite3"


@pytest.fixture(scope="module")
def first_run(small_engine: Engine, long_pdf: Document, cache_path: Path) -> Run:
    started = time.perf_counter()
    run = summarize(Summarizer(small_engine, SummaryCache(cache_path), SETTINGS), long_pdf)
    run.result.seconds = time.perf_counter() - started
    return run


def test_chunks_fit_their_budget_and_cover_the_document_in_order(
    small_engine: Engine, long_pdf: Document
) -> None:
    summarizer = Summarizer(small_engine, SummaryCache(), SETTINGS)
    budget = summarizer.chunk_budget()
    chunks = summarizer.chunks(long_pdf)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.tokens == small_engine.count_tokens(chunk.text) <= budget
        assert chunk.label.startswith("page")
    assert " ".join(c.text for c in chunks).split() == long_pdf.text.split()
    # Chunks are filled: no more than one in four is under half its budget.
    assert sum(c.tokens < budget / 2 for c in chunks) <= len(chunks) / 4


def test_long_pdf_is_summarized_end_to_end(first_run: Run, small_engine: Engine, long_pdf: Document) -> None:
    result = first_run.result
    assert small_engine.count_tokens(long_pdf.text) >= 8 * CONTEXT
    assert result.method == "hierarchical"
    assert result.chunk_count >= 8
    assert result.visited_chunk_ids == list(range(result.chunk_count))
    assert result.complete and not result.cancelled
    assert [s.chunk_ids for s in result.section_summaries] == [[i] for i in range(result.chunk_count)]
    assert_within_context(result)
    assert [c.stage for c in result.calls].count("section") == result.chunk_count
    assert result.calls[-1].stage == "final"
    assert result.text.strip() and first_run.streamed == result.text


def test_progress_reaches_every_part_and_100_percent(first_run: Run) -> None:
    progress = first_run.progress
    done = [p.done for p in progress]
    assert done == sorted(done)
    assert progress[-1].stage == "done" and progress[-1].fraction == 1.0
    assert all(p.done <= p.total for p in progress)
    assert any(p.eta_seconds is not None and p.eta_seconds > 0 for p in progress if p.stage == "sections")
    assert progress[-1].done >= first_run.result.chunk_count + 1


def test_running_again_reuses_the_cache(
    first_run: Run, small_engine: Engine, long_pdf: Document, cache_path: Path
) -> None:
    again = summarize(Summarizer(small_engine, SummaryCache(cache_path), SETTINGS), long_pdf)
    assert again.result.cache_hits >= first_run.result.chunk_count + 1
    assert again.result.calls == []
    assert again.result.text == first_run.result.text
    assert again.streamed == first_run.result.text
    assert again.result.seconds < first_run.result.seconds / 10
    assert again.result.visited_chunk_ids == first_run.result.visited_chunk_ids


def test_key_points_reuse_section_summaries_and_name_their_pages(
    first_run: Run, small_engine: Engine, long_pdf: Document, cache_path: Path
) -> None:
    points = summarize(Summarizer(small_engine, SummaryCache(cache_path), SETTINGS), long_pdf, "points")
    result = points.result
    assert result.cache_hits >= result.chunk_count
    assert all(call.stage != "section" for call in result.calls)
    assert result.complete
    assert_within_context(result)
    lines = result.text.splitlines()
    assert 2 <= len(lines) <= 2 * SETTINGS.max_points
    assert all(line.startswith("- [page") for line in lines), result.text
    assert points.streamed == result.text


def test_cancel_stops_at_once_keeps_the_done_parts_and_resumes(
    small_engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("docx")
    # Fewer pages than the other tests: what is measured is the cancel in the third part and the resume after it.
    document = read_document(build_docx(folder / "travelogue.docx", travelogue_pages(CANCEL_PAGES)))
    assert document.sections[0].label == 'section "Chapter 1: Ashford"'
    cache = SummaryCache(folder / "summaries.sqlite3")
    summarizer = Summarizer(small_engine, cache, SETTINGS)
    two_done = threading.Event()
    cancelled_at: list[float] = []

    def on_progress(progress: SummaryProgress) -> None:
        if progress.done >= 2:
            two_done.set()

    def cancel_mid_part() -> None:
        two_done.wait(timeout=300)
        time.sleep(0.3)  # inside the third part: evaluating its prompt or writing its summary
        cancelled_at.append(time.perf_counter())
        summarizer.cancel()

    canceller = threading.Thread(target=cancel_mid_part)
    canceller.start()
    partial = summarizer.summarize(document, "brief", on_progress=on_progress)
    returned_at = time.perf_counter()
    canceller.join()

    assert partial.cancelled and not partial.complete
    assert returned_at - cancelled_at[0] < 1.0
    kept = len(partial.section_summaries)
    assert 2 <= kept < partial.chunk_count
    assert partial.visited_chunk_ids == list(range(kept))
    assert cache.count() >= kept

    resumed = Summarizer(small_engine, cache, SETTINGS).summarize(document, "brief")
    assert resumed.complete
    assert resumed.visited_chunk_ids == list(range(resumed.chunk_count))
    assert resumed.cache_hits >= kept
    assert [c.stage for c in resumed.calls].count("section") == resumed.chunk_count - kept
    assert [s.text for s in resumed.section_summaries[:kept]] == [s.text for s in partial.section_summaries]
    assert_within_context(resumed)
    assert resumed.text.strip()


def test_a_document_that_fits_is_summarized_in_one_pass(small_engine: Engine) -> None:
    pages = travelogue_pages(1)
    document = make_document("short.txt", "text", [Section("lines 1-3", pages[0])])
    result = Summarizer(small_engine, SummaryCache(), SETTINGS).summarize(document, "brief")
    assert result.method == "one pass"
    assert [c.stage for c in result.calls] == ["final"]
    assert result.visited_chunk_ids == [0]
    assert_within_context(result)


def test_the_requests_own_cancel_event_stops_it_between_parts(
    small_engine: Engine, tmp_path: Path, long_pdf: Document
) -> None:
    """Cancelled as the engine service cancels a job: the request's event is set and the engine told to stop.
    Landing between two parts, the engine's stop is cleared by the next request, so only the event stops it."""
    cache = SummaryCache(tmp_path / "summaries.sqlite3")
    summarizer = Summarizer(small_engine, cache, SETTINGS)
    cancel = threading.Event()

    def on_progress(progress: SummaryProgress) -> None:
        if progress.stage == "sections" and progress.done == 1:
            cancel.set()
            small_engine.cancel()

    partial = summarizer.summarize(long_pdf, "brief", on_progress=on_progress, cancel=cancel)
    assert partial.cancelled and not partial.complete
    assert len(partial.calls) == 1
    assert [s.chunk_ids for s in partial.section_summaries] == [[0]]
    assert partial.visited_chunk_ids == [0]
    assert cache.count() == 1
    assert not summarizer.cancel_requested  # the request's event, not the summarizer's own cancel()


def test_a_request_cancelled_before_it_starts_calls_no_model(
    small_engine: Engine, long_pdf: Document
) -> None:
    cancel = threading.Event()
    cancel.set()
    result = Summarizer(small_engine, settings=SETTINGS, use_cache=False).summarize(long_pdf, cancel=cancel)
    assert result.cancelled
    assert result.calls == [] and result.section_summaries == []


class Silenced:
    """The real engine's replies with their text dropped, for the parts ``silent`` picks: a model that ends its
    turn at once (as Gemma does when given ChatML). The model still runs, one token per reply, for real stats;
    every request is recorded."""

    def __init__(self, engine: Engine, silent: Callable[[Sequence[ChatMessage]], bool]) -> None:
        self.engine = engine
        self.silent = silent
        self.requests: list[tuple[list[ChatMessage], bool]] = []
        self.real_chat = engine.chat

    def chat(
        self, messages: Sequence[ChatMessage], sampling: SamplingOptions | None = None, **kwargs: Any
    ) -> Reply:
        silent = self.silent(messages)
        self.requests.append((list(messages), silent))
        if not silent:
            return self.real_chat(messages, sampling, **kwargs)
        reply = self.real_chat(messages, replace(sampling or SamplingOptions(), max_tokens=1), **kwargs)
        reply.collect()
        return Reply(iter(()), reply.stats)


def short_document(pages: int) -> Document:
    return make_document(
        "towns.txt",
        "text",
        [Section(f"page {n + 1}", text) for n, text in enumerate(travelogue_pages(pages))],
    )


def test_a_model_that_writes_nothing_ends_with_a_sentence_and_is_not_asked_again(
    small_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    silenced = Silenced(small_engine, lambda _messages: True)
    monkeypatch.setattr(small_engine, "chat", silenced.chat)
    cache = SummaryCache(tmp_path / "summaries.sqlite3")
    document = short_document(6)
    summarizer = Summarizer(small_engine, cache, SETTINGS)
    parts = len(summarizer.chunks(document))
    assert parts >= 2
    with pytest.raises(NothingWrittenError) as refused:
        summarizer.summarize(document, "brief")
    sentence = str(refused.value)
    print(sentence)
    assert "wrote nothing" in sentence and "towns.txt" in sentence
    assert "another model" in sentence and "chat template" in sentence
    # Every part was asked twice, and nothing was built on the empty parts.
    assert len(silenced.requests) == 2 * parts
    assert cache.count() == parts

    silenced.requests.clear()
    for style in ("brief", "detailed", "points"):
        with pytest.raises(NothingWrittenError):
            Summarizer(small_engine, cache, SETTINGS).summarize(document, style)
    assert silenced.requests == [], "the parts known to come back empty were asked again"

    one_page = short_document(1)
    with pytest.raises(NothingWrittenError):
        Summarizer(small_engine, cache, SETTINGS).summarize(one_page, "brief")
    with pytest.raises(NothingWrittenError):
        Summarizer(small_engine, cache, SETTINGS).summarize(one_page, "points")
    asked = len(silenced.requests)
    with pytest.raises(NothingWrittenError):
        Summarizer(small_engine, cache, SETTINGS).summarize(one_page, "brief")
    assert len(silenced.requests) == asked


def test_a_part_the_model_writes_nothing_for_is_left_out_and_counted(
    small_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = short_document(6)
    first_part = Summarizer(small_engine, settings=SETTINGS, use_cache=False).chunks(document)[0].text
    silenced = Silenced(small_engine, lambda messages: first_part in messages[-1]["content"])
    monkeypatch.setattr(small_engine, "chat", silenced.chat)
    result = Summarizer(small_engine, SummaryCache(tmp_path / "summaries.sqlite3"), SETTINGS).summarize(
        document, "brief"
    )
    assert result.complete and result.text.strip()
    assert result.empty_parts == 1
    assert result.section_summaries[0].text == ""
    assert all(part.text for part in result.section_summaries[1:])
    assert [silent for _messages, silent in silenced.requests].count(True) == 2  # asked once more
    final = silenced.requests[-1][0][-1]["content"]
    label = result.section_summaries[0].label
    assert all(f"[{part.label}]" in final for part in result.section_summaries[1:])
    assert f"[{label}]" not in final
