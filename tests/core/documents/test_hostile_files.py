"""Files made to hurt the reader (issue 12, items 2 and 4): each one built here, refused or read with a sentence,
in bounded time and memory. The figures are printed (run with -s) for the closing note."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.documents.chunking import ChunkingStopped, chunk_document
from app.core.documents.document import DocumentError, Section, describe, make_document
from app.core.documents.extraction_process import ReadFigures
from app.core.documents.reader import read_document
from app.core.documents.summary_cache import SummaryCache
from tests.fixtures.documents import (
    build_docx,
    build_flate_bomb_pdf,
    build_zip_bomb_docx,
    build_zip_package,
    travelogue_pages,
)

MB = 1_000_000


def _read(path: Path, **limits: float) -> tuple[str, ReadFigures, float, int]:
    """The sentence (or "read") that reading ``path`` gets, its figures, and the parent's own peak allocation."""
    figures = ReadFigures()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        read_document(path, figures=figures, **limits)  # type: ignore[arg-type]
        outcome = "read"
    except DocumentError as exc:
        outcome = str(exc)
    seconds = time.perf_counter() - started
    _current, parent_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"\n{path.name} ({path.stat().st_size:,} bytes): {seconds:.2f} s, child peak RSS "
        f"{figures.child_peak_bytes / MB:.0f} MB, parent peak allocation {parent_peak / MB:.1f} MB: {outcome}"
    )
    assert multiprocessing.active_children() == []  # the child is gone, whatever happened
    return outcome, figures, seconds, parent_peak


@pytest.fixture(scope="module")
def word_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_docx(tmp_path_factory.mktemp("docx") / "travelogue.docx", travelogue_pages(3))


def test_a_docx_unpacking_to_300_mb_is_refused_from_its_directory(tmp_path: Path, word_file: Path) -> None:
    bomb = build_zip_bomb_docx(tmp_path / "bomb.docx", word_file, zero_megabytes=300)
    outcome, figures, seconds, parent_peak = _read(bomb)
    assert "bomb.docx unpacks to 300.8 MB, over the limit of 200.0 MB for one document" in outcome
    assert seconds < 10
    assert figures.child_peak_bytes < 150 * MB  # before: 3.1 GB for a 600 MB bomb
    assert parent_peak < 20 * MB


def test_a_docx_compressed_over_100_to_1_is_refused(tmp_path: Path, word_file: Path) -> None:
    bomb = build_zip_bomb_docx(tmp_path / "dense.docx", word_file, zero_megabytes=40)
    outcome, figures, seconds, _ = _read(bomb)
    assert "dense.docx is compressed 1,0" in outcome and "to 1" in outcome and "was not opened" in outcome
    assert seconds < 10
    assert figures.child_peak_bytes < 150 * MB


def test_an_ordinary_docx_still_reads(word_file: Path) -> None:
    outcome, _, _, _ = _read(word_file)
    assert outcome == "read"


@pytest.mark.parametrize(
    ("members", "sentence"),
    [
        (
            {"[Content_Types].xml": b'<Types><Override ContentType="application/vnd.openxmlformats-'
             b'officedocument.spreadsheetml.sheet.main+xml"/></Types>'},
            "is an Excel spreadsheet; save the sheet as CSV",
        ),
        ({"mimetype": b"application/vnd.oasis.opendocument.text"}, "is an OpenDocument text"),
    ],
)  # fmt: skip
def test_other_packages_named_docx_are_named(
    tmp_path: Path, members: dict[str, bytes], sentence: str
) -> None:
    outcome, _, seconds, _ = _read(build_zip_package(tmp_path / "renamed.docx", members))
    assert sentence in outcome and seconds < 10


def test_a_nested_zip_as_the_word_text_is_called_damaged(tmp_path: Path, word_file: Path) -> None:
    nested = tmp_path / "nested.docx"
    with zipfile.ZipFile(word_file) as original, zipfile.ZipFile(nested, "w") as package:
        for member in original.infolist():
            inner = (
                word_file.read_bytes() if member.filename == "word/document.xml" else original.read(member)
            )
            package.writestr(member, inner)
    outcome, _, _, _ = _read(nested)
    assert "could not be read as a Word document; it may be damaged" in outcome


def test_a_pdf_with_a_huge_compressed_stream_is_named_not_taken_for_a_scan(tmp_path: Path) -> None:
    outcome, figures, seconds, _ = _read(build_flate_bomb_pdf(tmp_path / "flate.pdf", zero_megabytes=200))
    assert "has pages whose contents unpack to more than pypdf's limit of 75.0 MB" in outcome
    assert seconds < 20
    assert figures.child_peak_bytes < 400 * MB  # pypdf stops inflating at 75 MB


@pytest.mark.parametrize("tag", ["div", "b", "p", "table"])
def test_html_of_unclosed_tags_reads_in_linear_time_keeping_every_word(tmp_path: Path, tag: str) -> None:
    page = tmp_path / f"unclosed-{tag}.html"
    page.write_text(
        f"<{tag}>word{{}} ".replace("{}", "") * 30_000
    )  # 300 KB: before, > 120 s and still running
    outcome, figures, seconds, _ = _read(page)
    assert outcome == "read"
    assert seconds < 10
    assert figures.child_peak_bytes < 300 * MB
    assert read_document(page).text.count("word") == 30_000


def test_a_100_mb_single_line_is_refused_by_its_token_estimate(tmp_path: Path) -> None:
    line = tmp_path / "one-line.txt"
    with line.open("wb") as handle:
        for _ in range(99):
            handle.write(b"abcdefghi " * 100_000)
    outcome, figures, seconds, parent_peak = _read(line)
    assert "one-line.txt holds about 24,750,000 tokens of text, over the limit of 2,000,000 tokens" in outcome
    assert seconds < 30
    assert figures.child_peak_bytes < 600 * MB  # before: 3.3 GB in the tokenizer
    assert parent_peak < 20 * MB


def test_a_reader_past_its_deadline_is_killed(tmp_path: Path) -> None:
    page = tmp_path / "slow.html"
    page.write_text("<p>word <b>bold " * 200_000)
    outcome, _, seconds, _ = _read(page, timeout=0.05)
    assert "took longer than 0 s, so it was stopped" in outcome
    assert seconds < 3


@pytest.mark.parametrize(
    ("make", "sentence"),
    [
        (lambda folder: Path("/dev/zero"), "zero is a device, not a regular file"),
        (lambda folder: _fifo(folder / "pipe.txt"), "pipe.txt is a pipe (FIFO), not a regular file"),
        (lambda folder: _written(folder / "nuls.txt", b"\0" * MB), "looks like a binary file, not text"),
        (lambda folder: _written(folder / "nothing.txt", b""), "is empty (0 bytes)"),
        (lambda folder: folder, "is a folder, not a file"),
    ],
)
def test_files_that_are_not_documents_say_what_they_are(
    tmp_path: Path, make: Callable[[Path], Path], sentence: str
) -> None:
    outcome, _, seconds, _ = _read(make(tmp_path)) if make(tmp_path).is_file() else _special(make(tmp_path))
    assert sentence in outcome
    assert seconds < 5


def _special(path: Path) -> tuple[str, ReadFigures, float, int]:
    started = time.perf_counter()
    with pytest.raises(DocumentError) as caught:
        read_document(path)
    print(f"\n{path}: {time.perf_counter() - started:.3f} s: {caught.value}")
    return str(caught.value), ReadFigures(), time.perf_counter() - started, 0


def _fifo(path: Path) -> Path:
    if not path.exists():
        os.mkfifo(path)
    return path


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_chunking_cuts_an_overlong_run_by_characters_and_stops_on_cancel() -> None:
    document = make_document("line.txt", "text", [Section("line 1", "abcdefghi " * 2_000_000)])  # 20 MB
    longest = 0
    calls = 0

    def count_tokens(text: str) -> int:
        nonlocal longest, calls
        longest, calls = max(longest, len(text)), calls + 1
        return len(text) // 4

    stop = threading.Event()
    started = time.perf_counter()

    def should_stop() -> bool:
        if calls >= 50:
            stop.set()
        return stop.is_set()

    with pytest.raises(ChunkingStopped):
        chunk_document(document, count_tokens, 1000, should_stop=should_stop)
    seconds = time.perf_counter() - started
    print(
        f"\nchunking 20 MB: stopped after {calls} tokenizer calls in {seconds:.3f} s, longest call {longest:,}"
    )
    assert longest <= 1000 * 16  # never the whole 20 MB in one call
    assert seconds < 5
    chunks = chunk_document(make_document("a", "text", [Section("s", "word " * 40_000)]), count_tokens, 1000)
    assert all(c.tokens <= 1000 for c in chunks) and sum(c.text.count("word") for c in chunks) == 40_000


def test_the_summary_cache_is_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "summaries" / "summaries.sqlite3"
    SummaryCache(path).put("key", "a summary")
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in (path.parent.parent, path.parent, path)}
    print(f"\nmodes: { {p.name: oct(m) for p, m in modes.items()} }")
    assert modes == {path.parent.parent: 0o700, path.parent: 0o700, path: 0o600}


def test_counts_take_the_right_number() -> None:
    one = make_document("one.txt", "text", [Section("line 1", "hello")])
    assert describe(one, lambda text: 1) == "one.txt, 1 section, 1 token"
    assert describe(one) == "one.txt, 1 section, 1 word"
    assert describe(one, estimate_tokens=True) == "one.txt, 1 section, about 1 token"
