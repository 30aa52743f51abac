"""Cutting documents into chunks: budgets kept, every word kept, references a person can follow."""

from __future__ import annotations

from app.core.documents.chunking import chunk_document, span_label
from app.core.documents.document import Section, make_document


def test_a_giant_paragraph_is_cut_between_words_within_budget() -> None:
    document = make_document("wall.txt", "text", [Section("lines 1-1", "word " * 3000)])
    chunks = chunk_document(document, lambda text: len(text.split()), 500)
    assert all(c.tokens <= 500 for c in chunks)
    assert sum(len(c.text.split()) for c in chunks) == 3000


def test_chunks_kept_apart_have_one_section_each() -> None:
    document = make_document(
        "notes.txt",
        "text",
        [Section("page 1", "Short page one.", page=1), Section("page 2", "Short page two.", page=2)],
    )
    chunks = chunk_document(document, lambda text: len(text.split()), 100, keep_sections_apart=True)
    assert [(c.label, c.first_section, c.last_section) for c in chunks] == [
        ("page 1", 0, 0),
        ("page 2", 1, 1),
    ]
    together = chunk_document(document, lambda text: len(text.split()), 100)
    assert [c.label for c in together] == ["pages 1-2"]


def test_span_labels_name_pages_lines_and_sections() -> None:
    pages = [Section(f"page {n}", "x", page=n) for n in (4, 5, 6, 7)]
    assert span_label(pages) == "pages 4-7"
    assert span_label(pages[:1]) == "page 4"
    assert span_label([Section("lines 1-120", "x"), Section("lines 121-240", "x")]) == "lines 1-240"
    assert (
        span_label([Section('section "A"', "x"), Section('section "B"', "x")]) == 'section "A" to section "B"'
    )
    assert span_label([]) == "document"
