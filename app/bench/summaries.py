"""``llamadesk summarize --bench FILE``: what a summary costs compared with merely reading the text.

Figures from one run on one loaded model, so their ratio is fair:

- extraction: seconds to read the whole file into a Document (the target is a 300-page PDF);
- raw prompt evaluation: the same chunks' tokens evaluated by ``Llama.eval`` from a cold cache, nothing
  generated;
- the whole pipeline: chunking, section summaries, combining and the final summary, with the summary cache off,
  as document tokens per second of wall time. Target: pipeline / raw >= 0.85.

The two alternate for a few rounds (``ROUNDS``) and the fastest run of each is reported, since other work on
the machine can only slow a run down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from app.core.documents.chunking import Chunk
from app.core.documents.document import Document, Section, make_document
from app.core.documents.reader import read_document
from app.core.documents.summarize import Summarizer
from app.core.documents.summary_types import SummaryStyle
from app.core.llm.engine import Engine
from app.core.llm.protocol import ChatEngine, local_engine

TARGET_RATIO = 0.85
# Raw and pipeline runs alternate this many times by default, and the fastest of each counts.
ROUNDS = 2


@dataclass
class SummarizeBenchResult:
    document: str
    pages: int | None
    sections: int
    extraction_seconds: float
    model: str
    threads: int
    context_size: int
    style: str
    document_tokens: int
    whole_document_tokens: int
    chunk_count: int
    levels: int
    calls: int
    generated_tokens: int
    raw_eval_seconds: float
    raw_eval_tps: float
    pipeline_seconds: float
    pipeline_tps: float
    ratio: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def report(self) -> str:
        pages = f"{self.pages} pages" if self.pages else f"{self.sections} sections"
        part = (
            f"the first {self.document_tokens} of {self.whole_document_tokens} tokens"
            if self.document_tokens < self.whole_document_tokens
            else f"all {self.document_tokens} tokens"
        )
        return "\n".join(
            [
                f"Document: {self.document} ({pages})",
                f"Extraction: {self.extraction_seconds:.2f} s",
                f"Model: {self.model} ({self.threads} threads, context {self.context_size} tokens)",
                f"Summarized {part} in {self.chunk_count} chunks, {self.levels} combining levels, "
                f"{self.calls} model calls, {self.generated_tokens} tokens generated ({self.style})",
                f"Raw prompt evaluation: {self.raw_eval_tps:.1f} tokens/s ({self.raw_eval_seconds:.1f} s)",
                f"Whole pipeline:        {self.pipeline_tps:.1f} tokens/s ({self.pipeline_seconds:.1f} s)",
                f"  pipeline / raw = {self.ratio:.3f}   (target >= {TARGET_RATIO})",
            ]
        )


def timed_read(path: str | Path) -> tuple[Document, float]:
    started = time.perf_counter()
    document = read_document(path)
    return document, time.perf_counter() - started


def leading_part(document: Document, count_tokens: Callable[[str], int], token_limit: int | None) -> Document:
    """The document's first sections, up to about ``token_limit`` tokens (whole sections, at least one)."""
    if token_limit is None:
        return document
    kept: list[Section] = []
    total = 0
    for section in document.sections:
        if kept and total >= token_limit:
            break
        kept.append(section)
        total += count_tokens(section.text)
    if len(kept) == len(document.sections):
        return document
    return make_document(document.name, document.kind, kept, path=document.path, size=document.size)


def raw_evaluation_seconds(engine: Engine, chunks: list[Chunk]) -> tuple[int, float]:
    """Evaluate each chunk's tokens from an empty cache, as the pipeline's section prompts start cold."""
    llama = engine.llama
    tokens_total = 0
    seconds = 0.0
    for chunk in chunks:
        tokens = llama.tokenize(chunk.text.encode("utf-8"), add_bos=True, special=False)
        llama.reset()
        started = time.perf_counter()
        llama.eval(tokens)
        seconds += time.perf_counter() - started
        tokens_total += len(tokens)
    llama.reset()
    return tokens_total, seconds


def run_summarize_bench(
    document: Document,
    extraction_seconds: float,
    running: ChatEngine,
    *,
    token_limit: int | None = 16000,
    style: SummaryStyle = "brief",
    rounds: int = ROUNDS,
    progress: Callable[[str], None] | None = None,
) -> SummarizeBenchResult:
    # Raw evaluation needs llama.cpp itself: a server's engine answers with a sentence.
    engine = local_engine(running)
    say = progress or (lambda _line: None)
    info = engine.model
    assert info is not None, "load a model before benchmarking"
    part = leading_part(document, engine.count_tokens, token_limit)
    summarizer = Summarizer(engine, use_cache=False)
    chunks = summarizer.chunks(part)
    raw_tokens = 0
    raw_runs: list[float] = []
    pipeline_runs: list[float] = []
    result = None
    for round_number in range(1, rounds + 1):
        say(f"Round {round_number} of {rounds}: raw prompt evaluation of {len(chunks)} chunks...")
        raw_tokens, raw_seconds = raw_evaluation_seconds(engine, chunks)
        raw_runs.append(raw_seconds)
        say(f"Round {round_number} of {rounds}: summarizing (cache off)...")
        engine.clear_cache()
        result = summarizer.summarize(part, style)
        pipeline_runs.append(result.seconds)
    assert result is not None
    # The fastest of each: other work on the machine only ever slows a run down.
    raw_seconds, pipeline_seconds = min(raw_runs), min(pipeline_runs)
    raw_tps = raw_tokens / raw_seconds if raw_seconds else 0.0
    # The same token count on both sides: the chunks' text, as the raw run evaluated it.
    pipeline_tps = raw_tokens / pipeline_seconds if pipeline_seconds else 0.0
    return SummarizeBenchResult(
        document=document.name,
        pages=document.page_count,
        sections=len(document.sections),
        extraction_seconds=extraction_seconds,
        model=info.name,
        threads=info.threads,
        context_size=info.context_size,
        style=style,
        document_tokens=result.document_tokens,
        whole_document_tokens=engine.count_tokens(document.text)
        if part is not document
        else result.document_tokens,
        chunk_count=result.chunk_count,
        levels=result.levels,
        calls=len(result.calls),
        generated_tokens=result.generated_tokens,
        raw_eval_seconds=raw_seconds,
        raw_eval_tps=raw_tps,
        pipeline_seconds=pipeline_seconds,
        pipeline_tps=pipeline_tps,
        ratio=pipeline_tps / raw_tps if raw_tps else 0.0,
    )
