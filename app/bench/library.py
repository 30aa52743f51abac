"""``llamadesk bench --library``: how well and how fast libraries find things.

Quality: recall@5 of words alone (BM25), meaning alone (vectors) and both fused, on real documents (the
reference documentation of 50 modules of Python's standard library, as ``pydoc`` renders it from the docstrings
of this interpreter) with 50 questions a person might ask, each written in other words than the documentation's.
A question counts as found when a module it is about is among the files of the top 5 passages.

Speed: passages indexed per second, the embedding model's tokens per second, and search latency (p50, p95) over
a library grown to ``search_passages`` passages.
"""

from __future__ import annotations

import pydoc
import random
import resource
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.bench.sample_pdf import sample_pages
from app.bench.serve import native_tool_path
from app.core.documents.retrieval import query_words
from app.core.library.database import LibraryDatabase, library_token
from app.core.library.embedding import MAX_INPUT_TOKENS, Embedder
from app.core.library.indexing import EMBED_BATCH, IndexReport, define_library, index_library, library_id
from app.core.library.search import VectorCache, meaning_ranking, search_library, word_ranking

if TYPE_CHECKING:  # Qt is imported only by the parts that show the panel
    from app.ui.library_jobs import IndexRequest
    from app.ui.library_panel import LibraryPanel

TOP = 5
# Each question, and the modules whose documentation answers it.
QUESTIONS: list[tuple[str, set[str]]] = [
    ("How do I compute a fingerprint of a file's contents to detect tampering?", {"hashlib", "hmac"}),
    ("Make an unguessable code for a password reset link", {"secrets"}),
    ("Typical central figure of a set of measurements", {"statistics"}),
    ("Launch another program and collect what it prints", {"subprocess"}),
    ("Duplicate an entire folder with everything inside it", {"shutil"}),
    ("Do file names fit a wildcard like *.txt", {"fnmatch", "glob"}),
    ("A scratch file that vanishes once I'm done with it", {"tempfile"}),
    ("Read the switches a user typed after my script's name", {"argparse", "getopt"}),
    ("Show what changed between two versions of a text", {"difflib"}),
    ("Reflow long paragraphs so no line is too wide", {"textwrap"}),
    ("Always get the lowest item quickly, like a priority queue", {"heapq", "queue"}),
    ("Put a new item into an ordered list without sorting it again", {"bisect"}),
    ("Tally how often each word occurs", {"collections"}),
    ("Remember results of a slow function so repeated calls are instant", {"functools"}),
    ("Split a web address into its scheme, host and path", {"urllib.parse"}),
    ("Deliver an e-mail through a mail server", {"smtplib"}),
    ("Turn binary data into printable characters for transport", {"base64", "binascii"}),
    ("Lay out numbers as raw bytes the way a C program expects", {"struct", "array"}),
    ("Keep Python objects on disk and get them back next run", {"pickle", "shelve"}),
    ("Money arithmetic without binary rounding surprises", {"decimal"}),
    ("Represent one third exactly, as numerator over denominator", {"fractions"}),
    ("A label that is different from every other one ever made", {"uuid"}),
    ("Is this host on a private network range", {"ipaddress"}),
    ("Show a page to the person in their web viewer", {"webbrowser"}),
    ("Ask for a secret phrase without showing it as it is typed", {"getpass"}),
    ("Which operating system and processor is this running on", {"platform"}),
    ("What is the official name of a character, or strip its accents", {"unicodedata"}),
    ("Read settings from a file with [sections] and key=value lines", {"configparser"}),
    ("Shrink data with the DEFLATE algorithm", {"zlib", "gzip"}),
    ("How long does a tiny piece of code take to execute", {"timeit"}),
    ("Print the chain of calls that led to an error", {"traceback"}),
    ("Reclaim memory held by objects that refer to each other in a loop", {"gc"}),
    ("A fixed set of named constants", {"enum"}),
    ("Point to an object without keeping it alive", {"weakref"}),
    ("React when the operating system interrupts my process", {"signal"}),
    ("Wait until one of many network connections has something to read", {"select", "selectors"}),
    ("Treat a file on disk as if it were memory", {"mmap"}),
    ("Read a spreadsheet exported with commas between the fields", {"csv"}),
    ("Keep records in a small embedded SQL database", {"sqlite3"}),
    ("Bundle several files into one archive", {"zipfile", "tarfile"}),
    ("Run something at a later moment, in order of time", {"sched"}),
    ("Which weekday was a date; print a month as a grid", {"calendar"}),
    ("Hand work to a pool of background workers and gather results", {"concurrent.futures"}),
    ("A full independent duplicate of a nested structure", {"copy"}),
    ("Print a nested dictionary so it is easy to read", {"pprint"}),
    ("Make text safe to put inside a web page's markup", {"html"}),
    ("Read an XML document as a tree of elements", {"xml.etree.ElementTree"}),
    ("Convert a colour between RGB and hue-saturation-value", {"colorsys"}),
    ("Get the samples out of a WAV sound file", {"wave"}),
    ("Check that a message came from someone holding the shared key", {"hmac"}),
]
# The documents: every module the questions are about, and some that none are (distractors).
DISTRACTORS = [
    "json",
    "random",
    "datetime",
    "time",
    "threading",
    "logging",
    "itertools",
    "socket",
    "math",
    "string",
]
# Characters kept of each module's documentation: the overview and the first functions, as a person's notes are.
DOCUMENT_CHARACTERS = 12_000


@dataclass
class LibraryBenchmark:
    documents: int
    passages: int
    questions: int
    recall_words: float
    recall_meaning: float
    recall_hybrid: float
    index_seconds: float
    passages_per_second: float
    embedding_tokens_per_second: float
    native_embedding_tokens_per_second: float | None  # llama.cpp's llama-embedding, same model, same thread
    search_passages: int
    search_p50_ms: float
    search_p95_ms: float
    reindex_files: int
    reindex_one_changed_seconds: float  # adding again after one file of ``reindex_files`` changed
    long_text_pages: int
    long_text_passages: int
    long_text_passages_per_second: float  # a long text file indexed, read and embedded
    gui_worst_gap_ms: float  # the window's GUI thread while its Library panel indexes the documents
    peak_memory_mb: float  # the benchmark process at its largest (the 100,000-passage matrix included)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def _native(self) -> str:
        native = self.native_embedding_tokens_per_second
        if not native:
            return "llama.cpp's llama-embedding not measured (installers/build_llama_server.py builds it)"
        ratio = self.embedding_tokens_per_second / native
        return f"llama.cpp's llama-embedding {native:.0f} tokens/s on the same passages (ours/native {ratio:.3f})"

    def report(self) -> str:
        return "\n".join(
            [
                f"Retrieval on {self.documents} real documents ({self.passages} passages), {self.questions} "
                f"questions in other words, recall@{TOP}:",
                f"  words alone (BM25)    {self.recall_words:.2f}",
                f"  meaning alone         {self.recall_meaning:.2f}",
                f"  both, fused (RRF)     {self.recall_hybrid:.2f}",
                f"Indexing: {self.passages_per_second:.1f} passages/s ({self.index_seconds:.1f} s, reading and "
                f"embedding); embedding alone {self.embedding_tokens_per_second:.0f} tokens/s, {self._native()}",
                f"Search over {self.search_passages:,} passages: p50 {self.search_p50_ms:.1f} ms, "
                f"p95 {self.search_p95_ms:.1f} ms",
                f"Adding a {self.reindex_files}-file library again after one file changed: "
                f"{self.reindex_one_changed_seconds:.2f} s",
                f"A {self.long_text_pages:,}-page text: {self.long_text_passages:,} passages at "
                f"{self.long_text_passages_per_second:.1f} passages/s",
                f"The window's GUI thread while its Library panel indexed the documents: worst gap "
                f"{self.gui_worst_gap_ms:.0f} ms",
                f"Peak memory of the benchmark: {self.peak_memory_mb:.0f} MB",
            ]
        )


def corpus_modules(questions: list[tuple[str, set[str]]]) -> list[str]:
    """The modules whose documents a run indexes: every one ``questions`` are about, and the distractors."""
    return sorted({module for _, modules in questions for module in modules} | set(DISTRACTORS))


def write_corpus(folder: Path, modules: list[str]) -> list[Path]:
    """One text file per module: its pydoc documentation, cut to DOCUMENT_CHARACTERS at a line end."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for module in modules:
        text = pydoc.render_doc(module, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
        cut = text.rfind("\n", 0, DOCUMENT_CHARACTERS)
        path = folder / f"{module}.txt"
        path.write_text(text[: cut if cut > 0 else DOCUMENT_CHARACTERS])
        paths.append(path)
    return paths


def recall(found: list[list[str]], questions: list[tuple[str, set[str]]]) -> float:
    """The share of questions with a module they are about among the files of their top hits."""
    hits = sum(1 for files, (_, modules) in zip(found, questions, strict=True) if modules & set(files[:TOP]))
    return hits / len(questions)


def run_library_benchmark(
    embedding_model: Path,
    *,
    search_passages: int = 100_000,
    questions: list[tuple[str, set[str]]] = QUESTIONS,
    long_text_pages: int = 1000,
    progress: Callable[[str], None] | None = None,
) -> LibraryBenchmark:
    """Every figure of the benchmark (see the module's docstring); ``questions`` a subset, for a quicker run."""
    modules = corpus_modules(questions)
    say = progress or (lambda _line: None)
    with tempfile.TemporaryDirectory(prefix="llamadesk-bench-library-") as scratch:
        root = Path(scratch)
        say(f"Writing {len(modules)} documents from the standard library's documentation...")
        write_corpus(root / "docs", modules)
        db = LibraryDatabase(root / "library.sqlite3")
        embedder = Embedder(embedding_model)
        try:
            define_library(db, "docs", [root / "docs"], embedding_model)
            say("Indexing them with the embedding model...")
            report = index_library(db, "docs")
            passages = report.passages
            ident = library_id(db, "docs")
            names = _file_names(db)
            vectors = VectorCache()
            words, meaning, hybrid = [], [], []
            for question, _ in questions:
                words.append(_files(names, word_ranking(db, ident, question)))
                meaning.append(_files(names, meaning_ranking(db, ident, question, embedder, vectors)))
                fused = search_library(db, "docs", question, top=50, embedder=embedder, vectors=vectors)
                hybrid.append(_dedupe([Path(hit.path).stem for hit in fused]))
            # One line each, as the native tool reads its input; counted once, with the [CLS] and [SEP] added.
            texts = [
                " ".join(text.split())
                for (text,) in db.connection.execute("SELECT text FROM passage_text LIMIT 256")
            ]
            tokens = sum(embedder.count_tokens(text) + 2 for text in texts)
            tokens_per_second = _embedding_speed(embedder, texts, tokens)
            say("Timing llama.cpp's own llama-embedding on the same passages...")
            native = _native_embedding_speed(embedding_model, texts, tokens, root)
            say(f"Indexing {REINDEX_FILES} notes, then again after one changed...")
            reindex_seconds = _reindex_one_changed(root / "notes", root / "notes.sqlite3", embedding_model)
            say(f"Indexing a {long_text_pages:,}-page text...")
            long_passages, long_rate = _long_text(
                root / "long", root / "long.sqlite3", embedding_model, long_text_pages
            )
            say("Indexing the documents again from the window's Library panel, timing its GUI thread...")
            gui_gap = _gui_worst_gap(root / "docs", root / "gui.sqlite3", embedding_model)
            say(f"Growing a library to {search_passages:,} passages to time searches...")
            p50, p95 = _search_latency(root / "big.sqlite3", embedder, search_passages)
        finally:
            embedder.close()
            db.close()
    return LibraryBenchmark(
        documents=len(modules),
        passages=passages,
        questions=len(questions),
        recall_words=recall(words, questions),
        recall_meaning=recall(meaning, questions),
        recall_hybrid=recall(hybrid, questions),
        index_seconds=report.seconds,
        passages_per_second=passages / report.seconds if report.seconds else 0.0,
        embedding_tokens_per_second=tokens_per_second,
        native_embedding_tokens_per_second=native,
        search_passages=search_passages,
        search_p50_ms=p50,
        search_p95_ms=p95,
        reindex_files=REINDEX_FILES,
        reindex_one_changed_seconds=reindex_seconds,
        long_text_pages=long_text_pages,
        long_text_passages=long_passages,
        long_text_passages_per_second=long_rate,
        gui_worst_gap_ms=gui_gap * 1000,
        peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def _file_names(db: LibraryDatabase) -> dict[int, str]:
    rows = db.connection.execute("SELECT p.id, f.path FROM passages p JOIN files f ON f.id = p.file_id")
    return {int(passage_id): Path(path).stem for passage_id, path in rows}


def _files(names: dict[int, str], ranking: list[int]) -> list[str]:
    return _dedupe([names[passage_id] for passage_id in ranking])


def _dedupe(files: list[str]) -> list[str]:
    """Files in the order their first passage ranks: the top hits' files, as a person reads them."""
    return list(dict.fromkeys(files))


def _embedding_speed(embedder: Embedder, texts: list[str], tokens: int) -> float:
    """Tokens per second embedding ``texts`` (``tokens`` in all) in batches as indexing does."""
    started = time.perf_counter()
    for start in range(0, len(texts), EMBED_BATCH):
        embedder.embed(texts[start : start + EMBED_BATCH])
    return tokens / (time.perf_counter() - started)


def _native_embedding_speed(model: Path, texts: list[str], tokens: int, scratch: Path) -> float | None:
    """llama.cpp's ``llama-embedding`` on the same texts with one thread, in tokens per second: its run on them
    less its run on one short text (the tool prints no timing of its own with array output, and both runs pay
    the same start, load and warm-up). None when the tool is not built or fails."""
    tool = native_tool_path("llama-embedding")
    if not tool.is_file():
        return None

    def run(prompts: list[str]) -> float | None:
        separator = "<|passage|>"
        file = scratch / "passages.txt"
        file.write_text(separator.join(prompts))
        started = time.perf_counter()
        finished = subprocess.run(
            [
                str(tool), "-m", str(model), "-f", str(file), "--embd-separator", separator, "-t", "1",
                "-tb", "1", "-c", str(MAX_INPUT_TOKENS), "-b", str(MAX_INPUT_TOKENS), "-ub", str(MAX_INPUT_TOKENS),
                "--pooling", "mean", "--embd-output-format", "array",
            ],
            capture_output=True,
            timeout=600,
            check=False,
        )  # fmt: skip
        return time.perf_counter() - started if finished.returncode == 0 else None

    alone, whole = run(["x"]), run(texts)
    if alone is None or whole is None or whole <= alone:
        return None
    return tokens / (whole - alone)


REINDEX_FILES = 150


def _long_text(folder: Path, database: Path, model: Path, pages: int) -> tuple[int, float]:
    """Passages and passages per second indexing one text of ``pages`` pages (about 4,000 characters each)."""
    folder.mkdir()
    (folder / "long.txt").write_text("\n\n".join(sample_pages(pages)))
    db = LibraryDatabase(database)
    try:
        define_library(db, "long", [folder], model)
        report = index_library(db, "long")
    finally:
        db.close()
    if report.problems:
        raise RuntimeError(report.problems[0].sentence)
    return report.passages, report.passages / report.seconds if report.seconds else 0.0


def _gui_worst_gap(folder: Path, database: Path, model: Path) -> float:
    """The longest the window's GUI thread went without running its event loop, in seconds, while the Library
    panel (the window's own, with its own threads) indexed ``folder``: a 10 ms timer's worst gap."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.bench.qt_timing import GapTimer
    from app.ui.library_jobs import IndexRequest, LibraryThread
    from app.ui.library_panel import LibraryPanel

    application = QApplication.instance() or QApplication([])
    thread = LibraryThread(database)
    panel = LibraryPanel(thread, database)
    panel.show()
    timer = GapTimer()
    try:
        timer.start()
        index_from_panel(panel, IndexRequest("gui", (folder,), model))
        timer.stop()
    finally:
        panel.shutdown()
        thread.shutdown()
        panel.close()
        application.processEvents()
    return timer.worst


def index_from_panel(panel: LibraryPanel, request: IndexRequest, limit_seconds: float = 1800) -> IndexReport:
    """Index ``request`` from the Library ``panel`` (its own thread, as a person's click does), running the
    event loop until the run ends; its report. The window benchmarks time the GUI thread meanwhile."""
    from app.bench.qt_timing import run_until

    run_until(lambda: panel.loaded, 30)
    before = panel.last_report
    panel.index(request)
    run_until(lambda: panel.run is not None, 10)
    run_until(lambda: not panel.indexing, limit_seconds)
    report = panel.last_report
    if report is None or report is before or panel.indexing:
        raise RuntimeError(f'indexing "{request.name}" from the Library panel did not finish')
    return report


def _reindex_one_changed(folder: Path, database: Path, model: Path) -> float:
    """Seconds to add a library of REINDEX_FILES notes again after one of them changed (the first index is not
    timed): what a person waits after editing one note."""
    folder.mkdir()
    for number in range(REINDEX_FILES):
        (folder / f"note{number:03}.md").write_text(
            f"# Note {number}\n\n" + "Some thoughts on the week. " * 20
        )
    db = LibraryDatabase(database)
    try:
        define_library(db, "notes", [folder], model)
        index_library(db, "notes")
        (folder / "note042.md").write_text("# Note 42\n\nRewritten: the plan changed on Tuesday.\n")
        started = time.perf_counter()
        report = index_library(db, "notes")
        seconds = time.perf_counter() - started
        assert report.updated == 1 and report.unchanged == REINDEX_FILES - 1, report
        return seconds
    finally:
        db.close()


def _search_latency(path: Path, embedder: Embedder, count: int) -> tuple[float, float]:
    """p50 and p95 of hybrid searches, in ms, over a library of ``count`` passages: random prose from a fixed
    vocabulary for the words, random unit vectors of the model's size for the meaning."""
    db = LibraryDatabase(path)
    try:
        define_library(db, "big", [], None)
        ident = library_id(db, "big")
        _fill(db.connection, ident, count, embedder.dimensions)
        vectors = VectorCache()
        questions = [question for question, _ in QUESTIONS]
        search_library(db, "big", questions[0], embedder=embedder, vectors=vectors)  # reads the matrix once
        timings = []
        for question in questions * 2:
            started = time.perf_counter()
            search_library(db, "big", question, embedder=embedder, vectors=vectors)
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        db.close()
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95) - 1]


def _fill(connection: sqlite3.Connection, ident: int, count: int, dimensions: int) -> None:
    words = sorted({word for question, _ in QUESTIONS for word in query_words(question)}) + [
        f"term{number}" for number in range(5000)
    ]
    generator = random.Random(5)
    vectors = np.random.default_rng(5).standard_normal((count, dimensions)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with connection:
        connection.execute(
            "INSERT INTO files (library_id, path, size, mtime_ns, sha256, passages) VALUES (?, ?, 0, 0, 'x', ?)",
            (ident, "/bench/big.txt", count),
        )
        (file_id,) = connection.execute("SELECT id FROM files WHERE library_id = ?", (ident,)).fetchone()
        for number in range(count):
            connection.execute(
                "INSERT INTO passages (id, file_id, position, label, page, vector) VALUES (?, ?, ?, ?, NULL, ?)",
                (number + 1, file_id, number, f"lines {number}", vectors[number].tobytes()),
            )
            connection.execute(
                "INSERT INTO passage_text (rowid, text, library) VALUES (?, ?, ?)",
                (number + 1, " ".join(generator.choices(words, k=60)), library_token(ident)),
            )
