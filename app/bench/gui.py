"""``llamadesk bench --gui``: how long the GUI thread ever waits while the real model loads and answers.

A 10 ms timer on the GUI thread records the gap between its ticks; any work that blocked the thread (a
synchronous call into the engine, a slow repaint) shows up as a long gap. Target: the worst gap < 50 ms.

The timer runs from the moment the window is on screen: the model is then chosen and loaded the way the model
menu does it, a reply of 300 tokens is streamed, a 300-page PDF is attached (read, stored and indexed, then its
automatic summary started and stopped), and a library (20 text documents and a 30-page PDF) is indexed from
the window's own Library panel, with an embedding model when one is given (words only otherwise). Then the
transcript's own cases run (gui_transcript.py: a 50,000-character reply, a theme change, opening a 200-message
conversation). Every gap is filed under the phase it happened in, so the report names the phase of the worst.
Building and first painting the window happen before anything is visible, so they are reported on their own.
Everything runs in a throwaway home.

With ``probe`` a thread also watches for the interpreter lock held long by any thread (``gil_probe``) and the
report lists where: what to look at when a phase's worst gap is over the target.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.bench.gil_probe import GilProbe
from app.bench.gui_transcript import TranscriptBenchResult, measure_transcript
from app.bench.qt_timing import GapTimer, run_until
from app.core.errors import UserError
from app.core.paths import scratch_home

DOCUMENT_PAGES = 300
SUMMARY_RUN_SECONDS = 1.5
# The library: a few minutes' reading for a person, under a minute's indexing with an embedding model here.
LIBRARY_DOCUMENTS = 20
LIBRARY_PDF_PAGES = 30
TARGET_GAP_MS = 50.0
LOAD_PHASE = "model load"
REPLY_PHASE = "reply streamed"
ATTACH_PHASE = "PDF attached"
SUMMARY_PHASE = "summary started and stopped"
LIBRARY_PHASE = "library indexed"
STREAMING_PHASE = "long reply streamed (transcript)"


@dataclass
class GuiBenchResult:
    window_shown_ms: float
    ticks: int
    worst_gap_ms: float
    p99_gap_ms: float
    median_gap_ms: float
    load_seconds: float
    reply_tokens: int
    reply_tokens_per_second: float
    document_pages: int
    document_seconds: float  # from the drop to its card in the transcript: read, stored and indexed
    document_worst_gap_ms: float
    worst_gap_phase: str = ""
    phase_worst_gaps_ms: dict[str, float] = field(default_factory=dict)  # each phase's worst, in order
    library_files: int = 0
    library_passages: int = 0
    library_seconds: float = 0.0
    library_words_only: bool = True  # indexed without an embedding model
    transcript: TranscriptBenchResult | None = None
    lock_report: str = ""  # the interpreter-lock probe's findings, when it ran

    def report(self) -> str:
        transcript = [self.transcript.report()] if self.transcript else []
        phases = [
            f"    {phase:<34} {gap:6.1f} ms{'   over the target' if gap >= TARGET_GAP_MS else ''}"
            for phase, gap in self.phase_worst_gaps_ms.items()
        ]
        library = (
            f"Library of {self.library_files} files indexed from the Library panel "
            f"({'words only' if self.library_words_only else 'words and meaning'}): "
            f"{self.library_passages:,} passages in {self.library_seconds:.2f} s"
        )
        return "\n".join(
            [
                f"Bindings imported, window built and painted in {self.window_shown_ms:.0f} ms (before the timer starts)",
                f"GUI-thread timer: {self.ticks} ticks at 10 ms over the whole run",
                f"  worst gap {self.worst_gap_ms:.1f} ms during {self.worst_gap_phase}   "
                f"(target < {TARGET_GAP_MS:.0f} ms)",
                "  worst gap of each phase:",
                *phases,
                f"  99th percentile {self.p99_gap_ms:.1f} ms, median {self.median_gap_ms:.1f} ms",
                f"Model load {self.load_seconds:.2f} s; reply {self.reply_tokens} tokens at "
                f"{self.reply_tokens_per_second:.1f} tokens/s",
                f"{self.document_pages}-page PDF attached (read, stored, indexed) in {self.document_seconds:.2f} s; "
                f"worst gap meanwhile {self.document_worst_gap_ms:.1f} ms",
                library,
                *transcript,
                *([self.lock_report] if self.lock_report else []),
            ]
        )


def run_gui_benchmark(
    model: Path,
    context_size: int = 2048,
    *,
    embedding_model: Path | None = None,
    probe: bool = False,
) -> GuiBenchResult:
    """The benchmark (see the module's docstring); ``embedding_model`` for the library's meaning search."""
    with scratch_home("llamadesk-bench-"):
        return _measure(model, context_size, embedding_model, probe)


def _measure(model: Path, context_size: int, embedding_model: Path | None, probe: bool) -> GuiBenchResult:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.bench.library import QUESTIONS, corpus_modules, index_from_panel, write_corpus
    from app.bench.sample_pdf import sample_pages, write_text_pdf
    from app.core.history.store import HistoryStore
    from app.core.llm.bindings import import_backend
    from app.core.paths import app_paths
    from app.core.settings import Settings
    from app.ui.library_jobs import IndexRequest
    from app.ui.main_window import MainWindow

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([])
    settings = Settings(
        context_size=context_size, mode_overrides={"chat": {"max_tokens": 300, "temperature": 0.0}}
    )
    started = time.perf_counter()
    import_backend()  # as the application does before its window is shown
    store = HistoryStore()
    window = MainWindow(settings=settings, store=store, open_default_model=False)
    window.show()
    app.processEvents()
    window_shown = time.perf_counter() - started

    app_paths().cache_dir.mkdir(parents=True, exist_ok=True)
    pdf = write_text_pdf(app_paths().cache_dir / "bench.pdf", sample_pages(DOCUMENT_PAGES))
    library_folder = app_paths().cache_dir / "library"
    write_corpus(library_folder, corpus_modules(QUESTIONS)[:LIBRARY_DOCUMENTS])
    write_text_pdf(library_folder / "pages.pdf", sample_pages(LIBRARY_PDF_PAGES))
    lock_probe = GilProbe() if probe else None
    timer = GapTimer()
    timer.mark(LOAD_PHASE)
    timer.start()
    if lock_probe is not None:
        lock_probe.start()
    load_started = time.perf_counter()
    window.load_model(str(model))
    run_until(lambda: window.bridge.model is not None or not window.bridge.is_loading, 300)
    load_seconds = time.perf_counter() - load_started
    if window.bridge.model is None:
        window.close()
        raise UserError(f"The model {model.name} did not load, so the window could not be measured.")
    window.input.setPlainText(
        "Write a story about a lighthouse keeper and a storm, with a title in Markdown."
    )
    timer.mark(REPLY_PHASE)
    window.send()
    run_until(lambda: not window.bridge.is_generating, 600)
    stats = window.conversation.last_stats

    timer.mark(ATTACH_PHASE)
    document_started = time.perf_counter()
    first_document_gap = len(timer.gaps)
    window.attach_documents([str(pdf)])
    run_until(lambda: bool(window.documents.documents), 300)
    document_seconds = time.perf_counter() - document_started
    timer.mark(SUMMARY_PHASE)
    run_until(lambda: False, SUMMARY_RUN_SECONDS)  # the summary it starts, for a moment
    window.stop()
    run_until(lambda: not window.documents.summarizing, 60)
    document_gaps = timer.gaps[first_document_gap:]

    timer.mark(LIBRARY_PHASE)
    library_report = index_from_panel(
        window.libraries.panel, IndexRequest("bench", (library_folder,), embedding_model), 600
    )
    if library_report.problems:
        raise RuntimeError(f"the library could not read a file: {library_report.problems[0].sentence}")
    timer.stop()
    if lock_probe is not None:
        lock_probe.stop()
    transcript = measure_transcript(window, store)
    window.close()
    phase_worst = {phase: gap * 1000 for phase, gap in timer.worst_by_phase().items()}
    phase_worst[STREAMING_PHASE] = transcript.streaming_worst_gap_ms
    worst_phase = max(phase_worst, key=lambda phase: phase_worst[phase])
    measured = sorted(timer.gaps[1:])
    return GuiBenchResult(
        window_shown_ms=window_shown * 1000,
        ticks=len(measured),
        worst_gap_ms=phase_worst[worst_phase],
        p99_gap_ms=measured[int(len(measured) * 0.99) - 1] * 1000,
        median_gap_ms=statistics.median(measured) * 1000,
        load_seconds=load_seconds,
        reply_tokens=stats.generated_tokens if stats else 0,
        reply_tokens_per_second=stats.tokens_per_second if stats else 0.0,
        document_pages=DOCUMENT_PAGES,
        document_seconds=document_seconds,
        document_worst_gap_ms=max(document_gaps, default=0.0) * 1000,
        worst_gap_phase=worst_phase,
        phase_worst_gaps_ms=phase_worst,
        library_files=library_report.added + library_report.updated + library_report.unchanged,
        library_passages=library_report.passages,
        library_seconds=library_report.seconds,
        library_words_only=library_report.words_only,
        transcript=transcript,
        lock_report=lock_probe.report() if lock_probe is not None else "",
    )
