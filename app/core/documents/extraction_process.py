"""A file's extraction in a child process: stopped for certain at a deadline, with its memory limited.

A thread cannot be stopped: a parser stuck inside C (libxml2, zlib) or in a long pure-Python loop kept burning
a core after its deadline, and its memory was the app's. A child process is killed at the deadline and takes
its memory with it; on Linux and other Unixes an address-space limit (RLIMIT_AS) turns a file that needs too
much into a MemoryError inside the child, never a swapping machine or the app killed by the OOM killer.

The child comes from a fork server where there is one (Linux, macOS): it forks from a small clean process that
has the parsers already imported, so a read costs milliseconds to start, and nothing of the app (Qt, the
model) is copied into it. Elsewhere (Windows) it is spawned.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.documents.chunking import cut_passages
from app.core.documents.document import (
    Document,
    DocumentError,
    DocumentKind,
    Section,
    check_document_size,
    make_document,
)
from app.core.documents.formats import extract_sections
from app.core.errors import Cancelled, UserError
from app.core.priority import lower_this_process

if TYPE_CHECKING:  # the fork server's context does not exist on Windows
    from multiprocessing.context import ForkServerContext, SpawnContext

log = logging.getLogger(__name__)

# Address space for the child: the parsers and a document at the size limits take well under a gigabyte.
MAX_READER_MEMORY_BYTES = 2_000_000_000
CANCEL_CHECK_SECONDS = 0.05
_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
_PRELOAD = ["app.core.documents.extraction_process", "pypdf", "docx", "lxml.html", "charset_normalizer"]


@dataclass
class ReadFigures:
    """What one read cost, filled in by ``read_document`` when given: for benches, tests and the log."""

    seconds: float = 0.0
    child_peak_bytes: int = 0  # the child's peak resident memory; 0 where the platform cannot say


@dataclass(frozen=True)
class _Outcome:
    """What the child sends back: a document, a sentence, or a bug's traceback."""

    document: Document | None = None
    sentence: str | None = None
    bug: str | None = None  # the exception's type name; the traceback is in ``details``
    details: str = ""
    out_of_memory: bool = False
    peak_bytes: int = 0


class ReadingStopped(Cancelled):
    """The person stopped the read (``cancel`` was set); the child was killed, nothing was read."""


class ExtractionFailed(Exception):
    """The child ended without an answer: killed at the deadline, out of memory, or crashed."""

    def __init__(self, reason: str, details: str = "") -> None:
        super().__init__(reason)
        self.reason = reason  # "deadline", "memory" or "crash"
        self.details = details


def extract_in_child(
    path: Path,
    kind: DocumentKind,
    *,
    max_bytes: int,
    max_pages: int,
    timeout: float,
    figures: ReadFigures,
    cancel: threading.Event | None = None,
) -> Document:
    """``extract_file`` run in a child process; raises DocumentError for a sentence the child found,
    ExtractionFailed when it gave no answer in ``timeout`` seconds, or ReadingStopped once ``cancel`` is set
    (the child is then killed)."""
    if cancel is not None and cancel.is_set():
        raise ReadingStopped
    context: ForkServerContext | SpawnContext
    if _START_METHOD == "forkserver":
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)  # heeded only when the server starts, so once
    else:
        context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_child_main,
        args=(sender, str(path), kind, max_bytes, max_pages, MAX_READER_MEMORY_BYTES),
        name=f"read {path.name}",
        daemon=True,
    )
    started = time.perf_counter()
    try:
        child.start()
        sender.close()  # the child holds the only writing end, so its death reads as end of file here
        _wait_for_answer(receiver, timeout, cancel)
        try:
            outcome: _Outcome = receiver.recv()
        except EOFError:
            child.join(5)
            # SIGKILL with no deadline passed: the kernel's out-of-memory killer.
            reason = "memory" if child.exitcode == -9 else "crash"
            raise ExtractionFailed(reason, f"exit {child.exitcode}") from None
    finally:
        if child.pid is not None:  # started (a start that failed raises its own error, not join's)
            if child.is_alive():
                child.kill()
            child.join(5)
        receiver.close()
        figures.seconds = time.perf_counter() - started
    figures.child_peak_bytes = outcome.peak_bytes
    log.info("read %s in %.2f s, child peak %d bytes", path.name, figures.seconds, outcome.peak_bytes)
    if outcome.document is not None:
        return outcome.document
    if outcome.sentence is not None:
        raise DocumentError(outcome.sentence)
    if outcome.out_of_memory:
        raise ExtractionFailed("memory")
    raise ExtractionFailed("crash", f"{outcome.bug}: {outcome.details}")


def _wait_for_answer(receiver: Connection, timeout: float, cancel: threading.Event | None) -> None:
    """Return once the child has answered (or died); raise after ``timeout`` seconds, or soon after ``cancel``
    is set."""
    # A stop is looked for every CANCEL_CHECK_SECONDS: an Event cannot be waited on together with a pipe.
    deadline = time.perf_counter() + timeout
    step = CANCEL_CHECK_SECONDS if cancel is not None else timeout
    while not receiver.poll(max(0.0, min(step, deadline - time.perf_counter()))):
        if cancel is not None and cancel.is_set():
            raise ReadingStopped
        if time.perf_counter() >= deadline:
            raise ExtractionFailed("deadline")


def extract_file(path: Path, kind: DocumentKind, max_bytes: int, max_pages: int) -> Document:
    """The document in the file at ``path``, read as ``kind``, its text tidied and its size checked."""
    name = path.name
    with path.open(
        "rb"
    ) as handle:  # at most one byte past the limit: the file may have grown since its check
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DocumentError(
            f"{name} grew past the size limit while it was being read; try again once it is saved."
        )
    # The child is killed at its deadline, so the stop flag (for extraction in a thread) is never set.
    sections = extract_sections(name, data, kind, max_pages, threading.Event())
    del data
    sections = [s for s in (Section(s.label, _tidy(s.text), s.page) for s in sections) if s.text or s.page]
    if not any(s.text for s in sections):
        raise DocumentError(f"{name} has no text in it; there is nothing to summarize.")
    document = make_document(name, kind, sections, path=str(path.resolve()), size=path.stat().st_size)
    check_document_size(name, document.text)
    # Cut here, in the child: on the app's side the cut would hold the interpreter lock on a worker thread for
    # about half a second per thousand pages, and the GUI thread would wait for it in turns of 5 ms.
    return dataclasses.replace(document, passages=tuple(cut_passages(document)))


def _tidy(text: str) -> str:
    """One newline convention, no trailing spaces, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _child_main(
    sender: Connection, path: str, kind: DocumentKind, max_bytes: int, max_pages: int, memory_limit: int
) -> None:
    _limit_memory(memory_limit)
    lower_this_process()  # a read is background work: the window's GUI thread goes first for a core
    try:
        outcome = _Outcome(document=extract_file(Path(path), kind, max_bytes, max_pages))
    except UserError as exc:
        outcome = _Outcome(sentence=exc.message)
    except MemoryError:
        outcome = _Outcome(out_of_memory=True)
    except BaseException as exc:  # handed to the parent, which logs it as the bug it is
        outcome = _Outcome(bug=type(exc).__name__, details=traceback.format_exc())
    outcome = dataclasses.replace(outcome, peak_bytes=_peak_bytes())
    try:
        sender.send(outcome)
    except MemoryError:
        sender.send(_Outcome(out_of_memory=True, peak_bytes=_peak_bytes()))
    finally:
        sender.close()


def _limit_memory(limit: int) -> None:
    try:
        import resource
    except ImportError:  # Windows: the deadline still applies
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > limit:
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        except (ValueError, OSError):  # macOS refuses address-space limits; the deadline still applies
            log.debug("no address-space limit on this platform")


def _peak_bytes() -> int:
    try:
        import resource
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS counts bytes, Linux kilobytes
