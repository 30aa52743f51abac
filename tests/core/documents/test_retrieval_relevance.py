"""The few sources that matter, on a real multi-page PDF: a one-fact question that the search finds on the same page
several times gives one source for that page, no more than the cap, the best first, with the sentence that
answers it marked; and the rule itself, on hand-made hits."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.documents.document import Document
from app.core.documents.reader import read_document
from app.core.documents.retrieval import (
    MAX_SOURCE_GROUPS,
    RELEVANCE_FLOOR,
    DocumentIndex,
    Hit,
    Passage,
    approximate_tokens,
    build_context,
    matched_sentences,
    relevant_hits,
    sentence_spans,
)
from app.core.history.sources import ReplySource, group_sources
from tests.fixtures.documents import FACT_QUESTION, FACT_SENTENCE, build_pdf, dense_pages

# dense_pages puts three towns on each page (Ashford, Brindle and Carrow on page 1), about 2,000 characters: more
# than one passage each, so a question about one town finds its page several times.
QUESTION = "How many people lived in Carrow?"


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Document:
    return read_document(build_pdf(tmp_path_factory.mktemp("dense") / "towns.pdf", dense_pages(8)))


@pytest.fixture
def index(document: Document) -> DocumentIndex:
    built = DocumentIndex()
    built.add(document)
    return built


def sources_of(question: str, index: DocumentIndex, budget: int = 2000) -> list[ReplySource]:
    """As the chat session stores them."""
    context = build_context(index, question, approximate_tokens, budget)
    return [
        ReplySource(
            h.passage.document_name, h.passage.label, h.passage.page, h.passage.text, question=question
        )
        for h in context.hits
    ]


def test_a_one_fact_question_gives_one_source_per_page_best_first_with_its_sentence_marked(
    index: DocumentIndex,
) -> None:
    # What the search finds: page 1 more than once, and many other pages that share a common word.
    found = index.search(QUESTION, limit=12)
    assert [h.passage.page for h in found].count(1) >= 2 and len({h.passage.page for h in found}) > 3
    sources = sources_of(QUESTION, index)
    groups = group_sources(sources)
    references = [g.reference for g in groups]
    assert len(references) == len(set(references)) and 1 <= len(groups) <= MAX_SOURCE_GROUPS
    best = groups[0]
    assert (
        best.reference == "towns.pdf, page 1" and len(best.passages) >= 2
    )  # one source, its passages inside
    assert all(p.page == 1 for p in best.passages)
    assert best.question == QUESTION
    marked = [" ".join(best.text[start:end].split()) for start, end in matched_sentences(QUESTION, best.text)]
    assert len(marked) == 1 and marked[0].startswith("Nearly") and "people lived in Carrow" in marked[0]


def test_the_model_reads_exactly_the_passages_shown(index: DocumentIndex) -> None:
    context = build_context(index, QUESTION, approximate_tokens, 2000)
    assert context.text.count("[towns.pdf]") == len(context.hits)
    assert all(h.passage.text in context.text for h in context.hits)
    assert [h.score for h in context.hits] == sorted((h.score for h in context.hits), reverse=True)


def test_passages_remember_their_file(index: DocumentIndex, document: Document) -> None:
    (hit, *_) = index.search(QUESTION)
    assert hit.passage.path == document.path and Path(hit.passage.path).is_file()


def hit(label: str, score: float, document: str = "a.pdf") -> Hit:
    return Hit(Passage(document, document + "-hash", label, None, 0, f"{label} text"), score)


def test_the_rule_keeps_scores_near_the_best_from_a_few_pages() -> None:
    hits = [
        hit("page 1", 10.0),
        hit("page 1", 9.0),  # the same page again: no new source
        hit("page 2", 8.0),
        hit("page 1", 7.0, document="b.pdf"),  # another document's page 1 is another source
        hit("page 3", 6.0),
        hit("page 4", 5.5),  # past the cap
        hit("page 2", 5.1),  # past the cap, but its page is kept
        hit("page 5", 10.0 * RELEVANCE_FLOOR - 0.01),  # under the floor
    ]
    kept = relevant_hits(hits)
    assert [(h.passage.document_name, h.passage.label) for h in kept] == [
        ("a.pdf", "page 1"),
        ("a.pdf", "page 1"),
        ("a.pdf", "page 2"),
        ("b.pdf", "page 1"),
        ("a.pdf", "page 2"),
    ]
    assert len({(h.passage.document_hash, h.passage.label) for h in kept}) == MAX_SOURCE_GROUPS
    assert [h.passage.label for h in relevant_hits(hits, floor=0.85)] == ["page 1", "page 1"]
    # Scores that tell nothing apart (every word in nearly every passage): only the cap applies.
    flat = [hit(f"page {n}", 0.0) for n in range(1, 9)]
    assert len(relevant_hits(flat)) == MAX_SOURCE_GROUPS
    assert relevant_hits([]) == []


def test_the_marked_sentence_is_found_as_the_search_finds_words() -> None:
    text = (
        'The harbour was busy. The "keepers" of the lamp\nwere paid in coal.\n\n'
        "The lighthouse keeper kept the lamp lit. Gulls nested on the quay!"
    )
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == [
        "The harbour was busy.",
        'The "keepers" of the lamp\nwere paid in coal.',
        "The lighthouse keeper kept the lamp lit.",
        "Gulls nested on the quay!",
    ]
    # "keeper" and "lamps" match "keepers" and "lamp" by the index's stemming; the sentence with the most
    # question words wins.
    (best,) = matched_sentences("Who kept the lighthouse lamps, the keeper?", text, most=1)
    assert text[best[0] : best[1]] == "The lighthouse keeper kept the lamp lit."
    assert matched_sentences("What about the weather?", text) == []
    assert matched_sentences("the of and", text) == []
    on_page = f"Some words here. {FACT_SENTENCE} Other words there."
    (fact,) = matched_sentences(FACT_QUESTION, on_page, most=1)
    assert on_page[fact[0] : fact[1]] == FACT_SENTENCE
