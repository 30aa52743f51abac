"""The passage cut made in the reader's child process: the same passages as a cut made here, carried with the
document, used by the attached documents' index and by libraries; broken files and stops behave as before."""

from __future__ import annotations

import dataclasses
import multiprocessing
import pickle
import threading
import time
from pathlib import Path

import pytest

from app.core.documents.chunking import PASSAGE_TOKENS, cut_passages, passages_of
from app.core.documents.document import Document, DocumentError
from app.core.documents.extraction_process import ReadingStopped
from app.core.documents.reader import read_document
from app.core.documents.retrieval import DocumentIndex
from tests.fixtures.documents import FACT_PAGE, build_pdf, build_slow_pdf, corrupt_pdf_bytes, travelogue_pages


def _without_cut(document: Document) -> Document:
    """The document as the history gives it back: text and sections, no passages."""
    return Document.from_stored(document.text, document.to_dict())


def test_a_pdf_read_in_the_child_carries_the_passages_a_cut_here_gives(pdf_path: Path) -> None:
    document = read_document(pdf_path)
    assert document.passages is not None and len(document.passages) >= document.page_count  # type: ignore[operator]
    stored = _without_cut(document)
    assert stored.passages is None and stored == document  # the cut is no part of what a document is
    assert list(document.passages) == cut_passages(stored) == passages_of(stored)
    assert all(passage.tokens <= PASSAGE_TOKENS for passage in document.passages)
    # One page each (sections kept apart), in order, covering every page.
    pages = [document.sections[passage.first_section].page or 0 for passage in document.passages]
    assert pages == sorted(pages) and set(pages) == set(range(1, 11))
    assert all(passage.first_section == passage.last_section for passage in document.passages)


def test_the_index_of_a_read_document_finds_what_the_index_of_a_stored_one_does(pdf_path: Path) -> None:
    document = read_document(pdf_path)
    from_child, from_history = DocumentIndex(), DocumentIndex()
    try:
        assert (
            from_child.add(document)
            == from_history.add(_without_cut(document))
            == len(document.passages or ())
        )
        question = "Who was Oswin Tarrant?"
        hits = from_child.search(question)
        assert hits and hits == from_history.search(question)
        assert hits[0].passage.page == FACT_PAGE
    finally:
        from_child.close()
        from_history.close()


def test_the_cut_travels_with_the_document_between_processes(pdf_path: Path) -> None:
    document = read_document(pdf_path)
    again = pickle.loads(pickle.dumps(document))
    assert again.passages == document.passages


def test_a_broken_pdf_still_gets_its_sentence(tmp_path: Path, pdf_path: Path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(corrupt_pdf_bytes(pdf_path.read_bytes()))
    with pytest.raises(DocumentError) as caught:
        read_document(broken)
    assert "broken.pdf" in str(caught.value) and "Traceback" not in str(caught.value)


def test_a_long_pdf_read_and_cut_in_the_child_still_stops_at_once(tmp_path: Path) -> None:
    path = build_slow_pdf(tmp_path / "slow.pdf", text_runs=100_000)
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
    while not multiprocessing.active_children():
        assert time.perf_counter() - started < 60 and reader.is_alive()
        time.sleep(0.01)
    cancel.set()
    stopped = time.perf_counter()
    reader.join(30)
    assert not reader.is_alive() and time.perf_counter() - stopped < 5
    assert len(outcome) == 1 and isinstance(outcome[0], ReadingStopped)
    assert multiprocessing.active_children() == []


def test_a_document_changed_after_its_cut_is_cut_again(pdf_path: Path) -> None:
    """``dataclasses.replace`` of the text keeps no stale cut when the caller drops it, as make_document does."""
    document = read_document(pdf_path)
    shorter = dataclasses.replace(document, sections=document.sections[:2], passages=None)
    assert passages_of(shorter) == cut_passages(shorter)
    assert len(passages_of(shorter)) < len(document.passages or ())


@pytest.mark.slow
def test_a_300_page_pdf_is_cut_in_the_child(tmp_path: Path) -> None:
    """The window's case: the app's side gets the passages with the text and cuts nothing itself."""
    path = build_pdf(tmp_path / "long.pdf", travelogue_pages(300))
    document = read_document(path)
    assert document.passages is not None and len(document.passages) >= 300
    started = time.perf_counter()
    passages_of(document)
    assert (
        time.perf_counter() - started < 0.05
    )  # a copy of the list, not a cut (a cut takes a tenth of a second)
