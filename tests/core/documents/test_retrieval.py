"""Questions about an attached document: BM25 finds the right page, and it reaches the real model in the
prompt."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from app.core.documents.document import Document
from app.core.documents.reader import read_document
from app.core.documents.retrieval import (
    EXCERPTS_HEADER,
    DocumentIndex,
    approximate_tokens,
    build_context,
    context_budget,
    passage_match_query,
)
from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine
from app.core.modes import SamplingOptions
from tests.fixtures.documents import (
    FACT_PAGE,
    FACT_QUESTION,
    FACT_SENTENCE,
    build_pdf,
    travelogue_pages,
)


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Document:
    path = build_pdf(tmp_path_factory.mktemp("qa") / "travelogue.pdf", travelogue_pages(24))
    return read_document(path)


def index_of(document: Document) -> DocumentIndex:
    index = DocumentIndex()
    index.add(document)
    return index


def test_the_page_with_the_fact_ranks_first(document: Document) -> None:
    index = index_of(document)
    hits = index.search(FACT_QUESTION)
    assert hits, "the question found nothing"
    assert hits[0].passage.page == FACT_PAGE
    assert hits[0].passage.label == f"page {FACT_PAGE}"
    assert "Oswin Tarrant" in hits[0].passage.text
    assert hits[0].score >= hits[-1].score


def test_every_passage_belongs_to_exactly_one_page(document: Document) -> None:
    index = DocumentIndex()
    count = index.add(document)
    assert count > len(document.sections)  # pages were cut into passages
    hits = index.search("market church river road", limit=200)
    assert {hit.passage.label for hit in hits} <= {s.label for s in document.sections}
    for hit in hits:
        page_words = " ".join(document.sections[hit.passage.page - 1].text.split())
        assert " ".join(hit.passage.text.split()) in page_words


def test_any_typed_question_is_a_valid_query(document: Document) -> None:
    index = index_of(document)
    for question in ['"unbalanced', "NEAR(keeper AND", "what's -the- lighthouse*?", "", "the of and"]:
        index.search(question)  # must not raise
    assert passage_match_query("Who was the KEEPER of the keeper's lamp?") == '"keeper" OR "lamp"'


def test_context_fits_its_budget_and_keeps_its_pages_out_of_the_prompt(document: Document) -> None:
    index = index_of(document)
    context = build_context(index, FACT_QUESTION, approximate_tokens, budget_tokens=300)
    assert context.tokens <= 300
    assert context.text.startswith(EXCERPTS_HEADER)
    # The pages are the app's to show (from the hits), not the model's to cite: none is in the prompt, and the
    # prompt does not ask for any.
    assert "[travelogue.pdf]" in context.text
    assert "page" not in context.text.lower()
    assert f"travelogue.pdf, page {FACT_PAGE}" in context.references
    tight = build_context(index, "market river church road", approximate_tokens, budget_tokens=300)
    roomy = build_context(index, "market river church road", approximate_tokens, budget_tokens=2000)
    assert tight.tokens <= 300 < roomy.tokens <= 2000
    assert len(roomy.hits) > len(tight.hits)
    # The hits (the sources shown) come best first; the model reads the same passages in reading order.
    assert [h.score for h in roomy.hits] == sorted((h.score for h in roomy.hits), reverse=True)
    in_text = sorted(roomy.hits, key=lambda h: roomy.text.index(h.passage.text))
    positions = [(h.passage.document_name, h.passage.position) for h in in_text]
    assert positions == sorted(positions)


def test_removed_document_is_no_longer_found(document: Document) -> None:
    index = index_of(document)
    index.remove(document)
    assert index.search(FACT_QUESTION) == []
    assert index.opening_passages() == []


def test_the_index_belongs_to_the_thread_that_made_it(document: Document) -> None:
    index = index_of(document)
    failures: list[BaseException] = []

    def search_elsewhere() -> None:
        try:
            index.search(FACT_QUESTION)
        except sqlite3.ProgrammingError as exc:
            failures.append(exc)

    other = threading.Thread(target=search_elsewhere)
    other.start()
    other.join()
    assert len(failures) == 1, "a search from another thread must raise, not race"
    assert index.search(FACT_QUESTION)  # its owner still uses it


def test_an_index_built_on_one_thread_is_handed_to_another(document: Document) -> None:
    built: list[DocumentIndex] = []

    def build() -> None:  # as the window's thread pool does
        index = DocumentIndex(handed_over=True)
        index.add(document)
        built.append(index)

    builder = threading.Thread(target=build)
    builder.start()
    builder.join()
    index = built[0]
    assert index.search(FACT_QUESTION)[0].passage.page == FACT_PAGE
    index.close()


def test_the_cited_page_reaches_the_model_within_its_context(document: Document, engine: Engine) -> None:
    n_ctx = engine.llama.n_ctx()
    reply_tokens = 48
    index = DocumentIndex(engine.count_tokens)
    index.add(document)
    context = build_context(index, FACT_QUESTION, engine.count_tokens, context_budget(n_ctx, reply_tokens))
    assert context.hits[0].passage.page == FACT_PAGE or any(h.passage.page == FACT_PAGE for h in context.hits)
    assert FACT_SENTENCE in " ".join(context.text.split())

    # As the conversation sends them: the excerpts ride in the question's own turn.
    messages: list[ChatMessage] = [
        {"role": "system", "content": "You answer questions about documents."},
        {"role": "user", "content": f"{context.text}\n\nQuestion: {FACT_QUESTION}"},
    ]
    reply = engine.chat(messages, SamplingOptions(temperature=0.0, max_tokens=reply_tokens))
    answer = reply.collect()
    print(f"{FACT_QUESTION} -> {answer!r}")
    assert answer and reply.stats.dropped_messages == 0
    assert reply.stats.prompt_tokens + reply.stats.generated_tokens <= n_ctx
