"""Reading dropped files: the file checks, the deadline, and every kind of bad input getting its sentence."""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from app.core.documents.document import Document, DocumentError
from app.core.documents.extraction_process import ReadingStopped
from app.core.documents.reader import MAX_DOCUMENT_BYTES, read_document
from tests.fixtures.documents import (
    FACT_PAGE,
    build_encrypted_pdf,
    build_pdf,
    build_scanned_pdf,
    build_slow_pdf,
    corrupt_pdf_bytes,
    travelogue_pages,
)


def test_pdf_keeps_pages_and_their_numbers(pdf_path: Path) -> None:
    document = read_document(pdf_path)
    assert document.kind == "pdf"
    assert document.page_count == 10
    assert [s.label for s in document.sections] == [f"page {n}" for n in range(1, 11)]
    fact_page = document.sections[FACT_PAGE - 1]
    assert fact_page.page == FACT_PAGE
    assert "Oswin Tarrant" in fact_page.text
    assert all("Oswin" not in s.text for s in document.sections if s.page != FACT_PAGE)
    assert document.content_hash == hashlib.sha256(document.text.encode()).hexdigest()
    assert document.size == pdf_path.stat().st_size


def _bad_inputs(tmp_path: Path, pdf_path: Path) -> dict[str, tuple[Path, str]]:
    corrupt = tmp_path / "corrupt.pdf"
    corrupt.write_bytes(corrupt_pdf_bytes(pdf_path.read_bytes()))
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(pdf_path.read_bytes()[:700])
    binary = tmp_path / "photo.txt"
    binary.write_bytes(bytes(range(256)) * 64)
    empty = tmp_path / "empty.md"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.txt"
    blank.write_text("   \n\n  \n")
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as handle:  # sparse: the size check must not read it
        handle.truncate(MAX_DOCUMENT_BYTES + 1)
    unknown = tmp_path / "drawing.xyz"
    unknown.write_text("whatever")
    old_word = tmp_path / "letter.doc"
    old_word.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    fake_docx = tmp_path / "report.docx"
    fake_docx.write_text("not a zip at all")
    return {
        "encrypted": (
            build_encrypted_pdf(tmp_path / "locked.pdf", pdf_path, user_password="secret"),
            "is protected with a password",
        ),
        "rc4 encrypted": (
            build_encrypted_pdf(
                tmp_path / "locked-rc4.pdf", pdf_path, user_password="secret", algorithm="RC4-128"
            ),
            "is protected with a password",
        ),
        "corrupt": (corrupt, "could not be read as a PDF; it may be damaged"),
        "truncated": (truncated, "could not be read as a PDF; it may be damaged"),
        "scanned": (
            build_scanned_pdf(tmp_path / "scan.pdf"),
            "this PDF has no text to read; it is probably scanned images",
        ),
        "binary": (binary, "looks like a binary file, not text"),
        "empty": (empty, "is empty (0 bytes)"),
        "blank": (blank, "has no text in it"),
        "too large": (huge, "over the limit of 100.0 MB for one document"),
        "unknown type": (unknown, "LlamaDesk can't read .xyz files"),
        "old word": (old_word, "the old Word format (.doc)"),
        "fake docx": (fake_docx, "could not be read as a Word document"),
        "missing": (tmp_path / "gone.pdf", "was not found"),
        "folder": (tmp_path, "is a folder"),
    }


BAD_INPUTS = [
    "encrypted",
    "rc4 encrypted",
    "corrupt",
    "truncated",
    "scanned",
    "binary",
    "empty",
    "blank",
    "too large",
    "unknown type",
    "old word",
    "fake docx",
    "missing",
    "folder",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_its_sentence_quickly(tmp_path: Path, pdf_path: Path, case: str) -> None:
    path, sentence = _bad_inputs(tmp_path, pdf_path)[case]
    started = time.perf_counter()
    with pytest.raises(DocumentError) as caught:
        read_document(path)
    assert time.perf_counter() - started < 2.0
    assert sentence in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_page_limit_is_named(pdf_path: Path) -> None:
    with pytest.raises(DocumentError, match="has 10 pages; LlamaDesk reads documents of up to 4 pages"):
        read_document(pdf_path, max_pages=4)


def test_slow_extraction_is_given_up_without_waiting_for_it(tmp_path: Path) -> None:
    path = build_pdf(tmp_path / "long.pdf", travelogue_pages(60))
    started = time.perf_counter()
    with pytest.raises(DocumentError, match=r"took longer than 0 s, so it was stopped"):
        read_document(path, timeout=0.02)
    assert time.perf_counter() - started < 0.5


def test_a_stopped_read_kills_its_reader_at_once_and_the_file_reads_again(tmp_path: Path) -> None:
    path = build_slow_pdf(tmp_path / "slow.pdf", text_runs=100_000)  # 10 s or more to read
    cancel = threading.Event()
    outcome: list[BaseException | Document] = []

    def read() -> None:
        try:
            outcome.append(read_document(path, cancel=cancel))
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    started = time.perf_counter()
    while not multiprocessing.active_children():  # the reader process is at work
        assert time.perf_counter() - started < 60 and reader.is_alive()
        time.sleep(0.01)
    (child,) = multiprocessing.active_children()
    cancel.set()
    stopped = time.perf_counter()
    reader.join(30)
    assert not reader.is_alive() and time.perf_counter() - stopped < 5
    assert len(outcome) == 1 and isinstance(outcome[0], ReadingStopped)
    assert child.exitcode is not None and multiprocessing.active_children() == []  # killed, not left running

    small = build_slow_pdf(tmp_path / "small.pdf", text_runs=50)
    assert "painted blue" in read_document(small, cancel=threading.Event()).text
