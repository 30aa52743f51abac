"""``llamadesk summarize FILE...``: the summary on stdout, progress on stderr, one sentence and exit 1 on a bad file.

``--bench`` instead measures the whole summarization pipeline against raw prompt evaluation of the same text
(see app/bench/summaries.py).
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import TYPE_CHECKING, TextIO

from app import APP_NAME
from app.cli.common import add_model_arguments, loaded_model, stop_on_interrupt
from app.cli.remote_options import add_remote_arguments
from app.core.documents.summary_types import STYLES, SummaryProgress, SummaryResult, SummarySettings
from app.core.errors import UserError
from app.core.units import counted, human_duration

if TYPE_CHECKING:
    from app.core.documents.document import Document
    from app.core.llm.protocol import ChatEngine
    from app.core.llm.service import Job


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "summarize",
        help="summarize documents of any length (PDF, Word, text, Markdown, HTML, code)",
        description="Summarize documents of any length: the summary goes to stdout, progress to stderr. "
        "Ctrl+C stops; the parts already summarized are kept, so running again continues quickly.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="the documents to summarize")
    add_model_arguments(parser)
    add_remote_arguments(parser)
    parser.add_argument(
        "--style", choices=STYLES, default="brief", help="brief, detailed, or key points (points)"
    )
    parser.add_argument("--no-cache", action="store_true", help="do not reuse or keep section summaries")
    parser.add_argument(
        "--bench",
        action="store_true",
        help="measure instead: extraction time, and summarization tokens/s vs. raw prompt evaluation",
    )
    parser.add_argument(
        "--bench-tokens",
        type=int,
        metavar="N",
        default=16000,
        help="with --bench: summarize only the first N tokens of the document (default 16000; 0 = all)",
    )
    parser.add_argument(
        "--bench-rounds",
        type=int,
        metavar="N",
        default=2,
        help="with --bench: alternate raw and pipeline runs N times and keep the fastest of each (default 2)",
    )
    parser.set_defaults(handler=run_summarize)


class ProgressLine:
    """Progress on stderr: one line rewritten in place on a terminal, a line per step when redirected."""

    def __init__(self, stream: TextIO, name: str) -> None:
        self.stream = stream
        self.name = name
        self.interactive = stream.isatty()
        self.last = ""

    def __call__(self, progress: SummaryProgress) -> None:
        stage = {"sections": "reading", "combining": "combining", "final": "writing", "done": "done"}[
            progress.stage
        ]
        line = f"{self.name}: {stage}, part {progress.done} of {progress.total} ({progress.fraction:.0%})"
        if progress.eta_seconds is not None and progress.stage != "done":
            line += f", about {human_duration(progress.eta_seconds)} left"
        if progress.cache_hits:
            line += f", {progress.cache_hits} from cache"
        if line == self.last:
            return
        self.last = line
        if self.interactive:
            self.stream.write("\r\x1b[K" + line)
            if progress.stage == "done":
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def run_summarize(args: argparse.Namespace) -> int:
    if args.bench:
        if len(args.files) != 1:
            raise UserError("--bench measures one document at a time; give it one file.")
        return _run_bench(args)
    from app.core.documents.document import DocumentError
    from app.core.documents.reader import read_document

    documents: list[Document] = []
    failed = False
    for name in args.files:
        try:
            documents.append(read_document(name))
        except DocumentError as exc:
            print(f"{APP_NAME}: {exc}", file=sys.stderr)
            failed = True
    if not documents:
        return 1

    out = sys.stdout
    stopped = False
    with loaded_model(args) as (client, _info):
        for number, document in enumerate(documents):
            if len(documents) > 1:
                out.write(("\n" if number else "") + f"== {document.name} ==\n")
            job = client.start_job(_summary_job(document, args, out))
            with stop_on_interrupt(job.cancel):
                result = job.result()
            out.write("\n")
            out.flush()
            if result.cancelled:
                done = len(result.section_summaries)
                print(
                    f"Stopped after {done} of {counted(result.chunk_count, 'part')}; "
                    "those summarized are kept for next time.",
                    file=sys.stderr,
                )
                stopped = True
                break
            print(
                f"[{counted(result.chunk_count, 'part')}, {result.method}, {result.cache_hits} from cache, "
                f"{result.seconds:.1f} s]",
                file=sys.stderr,
            )
    if stopped:
        return 130
    return 1 if failed else 0


def _summary_job(document: Document, args: argparse.Namespace, out: TextIO) -> Job[SummaryResult]:
    """The summary of one document, as a job for the engine thread; its text streams to ``out``. When ``out`` is
    closed (``| head``), the summary stops: nobody reads the rest."""
    from app.core.documents.document import describe
    from app.core.documents.summarize import Summarizer

    def run(engine: ChatEngine, cancel: threading.Event) -> SummaryResult:
        def write(piece: str) -> None:
            if cancel.is_set():
                return
            try:
                out.write(piece)
                out.flush()
            except BrokenPipeError:
                cancel.set()
                engine.cancel()

        # The window's document card shows this same estimate, in the same words ("about 1,089 tokens").
        print(describe(document, estimate_tokens=True), file=sys.stderr)
        summarizer = Summarizer(engine, settings=SummarySettings(), use_cache=not args.no_cache)
        return summarizer.summarize(
            document,
            args.style,
            on_progress=ProgressLine(sys.stderr, document.name),
            on_text=write,
            cancel=cancel,
        )

    return run


def _run_bench(args: argparse.Namespace) -> int:
    from app.bench.summaries import run_summarize_bench, timed_read
    from app.core.documents.document import describe

    # Read before loading the model: a bad file costs a sentence, not a model load.
    document, extraction_seconds = timed_read(args.files[0])
    print(f"Read {describe(document)} in {extraction_seconds:.2f} s.", file=sys.stderr)
    with loaded_model(args) as (client, _info):
        result = client.start_job(
            lambda engine, _cancel: run_summarize_bench(
                document,
                extraction_seconds,
                engine,
                token_limit=args.bench_tokens or None,
                style=args.style,
                rounds=max(1, args.bench_rounds),
                progress=lambda line: print(line, file=sys.stderr),
            )
        ).result()
    print(result.report())
    return 0
