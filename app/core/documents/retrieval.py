"""Questions about attached documents: find the passages that answer them, and hand them to the model.

Each attached document is cut into short passages that never cross a page or section, so every passage has one
exact reference ("page 7"). The passages go into an SQLite FTS5 index and a question is matched against them
with BM25 ranking: no embedding model to download or run, and good at the names and numbers people ask about.
The best passages, as many as the token budget allows, become one block of excerpts, each under the name of its
document, that rides in the newest question's turn: the excerpts change with every question, and placed before the
history they would invalidate the model's cached evaluation of the whole conversation each turn.

The model is shown no page numbers and is not asked to cite any: a small model cites pages it makes up. The
exact pages come from the passages themselves (``DocumentContext.hits``), which the app shows under the answer.

Only the passages that matter are used (``relevant_hits``): those close in score to the best, from a few pages at
most. The same passages go to the model and under the answer, so the sources shown are exactly what the answer
was based on. Inside a passage, ``matched_sentences`` finds the sentence that best matches the question, with the
same words and the same tokenizer (stemming included) as the search itself.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Protocol

from app.core.documents.chunking import PASSAGE_TOKENS, chunk_document, passages_of
from app.core.documents.document import Document
from app.core.documents.document import approximate_tokens as approximate_tokens  # the window's sizing

# The share of the excerpts' budget (``context_budget``) they may fill: excerpts are counted by characters (the
# model's tokenizer belongs to the engine thread), so the budget keeps a margin for text that tokenizes more
# densely than four characters a token.
EXCERPT_BUDGET_SHARE = 0.75
EXCERPTS_HEADER = (
    "Excerpts from the attached documents, each under its document's name in square brackets. Answer the "
    "question from these excerpts, in your own words; if they do not hold the answer, say so."
)
# Which hits matter. BM25 scores have no absolute scale (they depend on the question's words and the documents),
# only their ratios within one search mean something: a score is a sum over the question's words of how rare the
# word is times how often the passage has it. A passage under half the best score is missing most of what made
# the best one match (typically it shares only a common word such as a town's name with the question), so it is
# left out. Past the cap, even close scores are the same fact said again or noise for a small model: a one-fact
# answer needs one page, and a question spanning a few facts gets a few.
RELEVANCE_FLOOR = 0.5
MAX_SOURCE_GROUPS = 3
# Where a passage's sentences end: after . ! or ? and a space, or at a blank line. A single line break is not one:
# a PDF's text keeps the page's line ends in mid-sentence.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|\n\s*\n")
# At most this many sentences of a source (a page's passages) are marked as matching the question.
MAX_MARKED_SENTENCES = 2
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"

# Most of the question words that carry no meaning; left out so they do not decide the ranking.
_STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do", "does", "for",
    "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not",
    "of", "on", "or", "our", "she", "he", "so", "than", "that", "the", "their", "them", "then", "there",
    "these", "they", "this", "those", "to", "was", "we", "were", "what", "when", "where", "which", "who",
    "whom", "whose", "why", "will", "with", "would", "you", "your", "about", "tell", "say", "said", "please",
    "document", "text", "page", "pages"
})  # fmt: skip


@dataclass(frozen=True)
class Passage:
    document_name: str
    document_hash: str
    label: str  # "page 7", 'section "Results"'
    page: int | None
    position: int  # order within its document
    text: str
    path: str = ""  # the file it was read from, where known (pasted text has none)

    @property
    def reference(self) -> str:
        return f"{self.document_name}, {self.label}"


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float  # BM25 relevance: higher is better


@dataclass(frozen=True)
class DocumentContext:
    """The excerpts to put before the question in its turn, and what went into them."""

    text: str  # the header, then each excerpt under its document's name
    hits: list[Hit]  # the passages in ``text``, best match first: the sources shown under the answer
    tokens: int

    @property
    def references(self) -> list[str]:
        """Where the excerpts come from, best match first: ["report.pdf, page 7", ...]."""
        return [hit.passage.reference for hit in self.hits]


class PassageSource(Protocol):
    """Where a conversation's questions find their passages: the documents attached to it (``DocumentIndex``),
    or the libraries it uses (``app.core.library.search.LibraryPassages``)."""

    def search(self, question: str, limit: int = 8) -> list[Hit]:
        """The passages that best match ``question``, best first."""
        ...

    def opening_passages(self, limit: int = 3) -> list[Hit]:
        """What to read for a question with no searchable words ("summarize this"); may be none."""
        ...


class DocumentIndex:
    """Passages of the documents attached to one conversation, searchable by BM25.

    An in-memory SQLite database, rebuilt from the documents whenever a conversation is opened, so there is
    nothing to keep on disk. It has one owner at a time: the thread that creates it, which adds, searches and
    closes it; SQLite raises if another thread touches it, so a misplaced call is found rather than raced.

    ``handed_over=True`` is for an index built on one thread and then given whole to another, its only user
    from then on: the window indexes documents in its thread pool (hundreds of milliseconds for thousands of
    pages) and hands the index to the GUI thread, which searches it with every question. The hand-off (a queued
    signal) orders the two threads' uses, so the connection is never used by both at once; SQLite's thread
    check would refuse the second owner all the same, so for such an index alone it is turned off.
    """

    def __init__(
        self, count_tokens: Callable[[str], int] = approximate_tokens, *, handed_over: bool = False
    ) -> None:
        self._count_tokens = count_tokens
        self._db = sqlite3.connect(":memory:", check_same_thread=not handed_over)
        self._db.execute(
            "CREATE VIRTUAL TABLE passages USING fts5("
            "text, document_name UNINDEXED, document_hash UNINDEXED, label UNINDEXED, page UNINDEXED, "
            f"position UNINDEXED, path UNINDEXED, tokenize = '{FTS_TOKENIZER}')"
        )

    def close(self) -> None:
        self._db.close()

    def add(self, document: Document) -> int:
        """Index ``document`` (again, if it was already); returns how many passages it gave."""
        chunks = (
            passages_of(document)  # cut in the reader's child process, most often
            if self._count_tokens is approximate_tokens
            else chunk_document(document, self._count_tokens, PASSAGE_TOKENS, keep_sections_apart=True)
        )
        rows = [
            (
                chunk.text,
                document.name,
                document.content_hash,
                chunk.label,
                document.sections[chunk.first_section].page,
                chunk.index,
                document.path,
            )
            for chunk in chunks
        ]
        with self._db:
            self._db.execute("DELETE FROM passages WHERE document_hash = ?", (document.content_hash,))
            self._db.executemany(
                "INSERT INTO passages (text, document_name, document_hash, label, page, position, path) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def remove(self, document: Document) -> None:
        with self._db:
            self._db.execute("DELETE FROM passages WHERE document_hash = ?", (document.content_hash,))

    def search(self, question: str, limit: int = 8) -> list[Hit]:
        """The passages that best match ``question``, best first; none when it has no searchable words."""
        query = passage_match_query(question)
        if not query:
            return []
        rows = self._db.execute(
            "SELECT text, document_name, document_hash, label, page, position, path, bm25(passages) AS rank "
            "FROM passages WHERE passages MATCH ? ORDER BY rank LIMIT ?",
            (query, limit),
        ).fetchall()
        # SQLite's bm25() is negated so that smaller sorts first; flip it so a higher score means a better match.
        return [
            Hit(Passage(name, digest, label, page, int(position), text, path), -float(rank))
            for text, name, digest, label, page, position, path, rank in rows
        ]

    def opening_passages(self, limit: int = 3) -> list[Hit]:
        """The start of each document: the context for questions with no searchable words ("summarize this")."""
        rows = self._db.execute(
            "SELECT text, document_name, document_hash, label, page, position, path FROM passages "
            "WHERE position < ? ORDER BY document_name, position",
            (limit,),
        ).fetchall()
        return [
            Hit(Passage(name, digest, label, page, int(pos), text, path), 0.0)
            for text, name, digest, label, page, pos, path in rows
        ]


def passage_match_query(question: str) -> str:
    """An FTS5 query matching passages that share any meaningful word with ``question`` (ranked by BM25, so
    more shared words rank higher). Stopwords are left out, and each word is quoted, so punctuation or FTS
    operators typed by a person ("AND", "NEAR", a stray quote) can never make the query invalid.

    Not the history search's ``fts_query``: that one finds messages containing every word typed, as a person
    searching their conversations expects."""
    return " OR ".join(f'"{word}"' for word in query_words(question))


def query_words(question: str) -> list[str]:
    """The words of ``question`` that are searched for, each once, in order: no stopwords, no single letters."""
    words: list[str] = []
    for word in re.findall(r"\w+", question.lower()):
        if len(word) > 1 and word not in _STOPWORDS and word not in words:
            words.append(word)
    return words


def relevant_hits(
    hits: list[Hit], *, floor: float = RELEVANCE_FLOOR, max_groups: int = MAX_SOURCE_GROUPS
) -> list[Hit]:
    """The hits that matter among ``hits`` (best first, as ``search`` gives them), still best first: those
    scoring at least ``floor`` times the best score, from the ``max_groups`` document pages (or sections) whose
    best passage ranks highest. Several passages of one page count as one page: they are shown as one source.
    When no hit scores above 0 (the question's words are in nearly every passage, so BM25 tells them apart by
    nothing), there is no best to be close to: only the cap applies."""
    best = max((hit.score for hit in hits), default=0.0)
    groups: list[tuple[str, str]] = []
    kept: list[Hit] = []
    for hit in sorted(hits, key=lambda h: -h.score):
        if best > 0 and hit.score < floor * best:
            break
        group = (hit.passage.document_hash, hit.passage.label)
        if group not in groups:
            if len(groups) >= max_groups:
                continue
            groups.append(group)
        kept.append(hit)
    return kept


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Where each sentence of ``text`` lies: (start, end) offsets, without the spaces between sentences."""
    spans: list[tuple[int, int]] = []
    start = 0
    for found in _SENTENCE_BREAK.finditer(text):
        end = found.start() + len(found.group().rstrip())  # closing quotes stay with their sentence
        if text[start:end].strip():
            spans.append(_trimmed(text, start, end))
        start = found.end()
    if text[start:].strip():
        spans.append(_trimmed(text, start, len(text)))
    return spans


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    piece = text[start:end]
    return start + len(piece) - len(piece.lstrip()), start + len(piece.rstrip())


def matched_sentences(question: str, text: str, *, most: int = MAX_MARKED_SENTENCES) -> list[tuple[int, int]]:
    """The sentences of ``text`` that best match ``question``, as (start, end) offsets in reading order: those
    holding the most of the question's searched words, ties broken by BM25, at most ``most``; none when no
    sentence holds any.

    The sentences are matched by SQLite FTS5 with the index's own tokenizer, so a word counts exactly when the
    search counted it ("keepers" matches "keeper" there, so it does here)."""
    words = query_words(question)
    spans = sentence_spans(text)
    if not words or not spans:
        return []
    with closing(sqlite3.connect(":memory:")) as db:
        db.execute(f"CREATE VIRTUAL TABLE sentences USING fts5(text, tokenize = '{FTS_TOKENIZER}')")
        db.executemany(
            "INSERT INTO sentences (rowid, text) VALUES (?, ?)",
            [(number, text[start:end]) for number, (start, end) in enumerate(spans)],
        )
        counts = [0] * len(spans)
        for word in words:
            for (number,) in db.execute(
                "SELECT rowid FROM sentences WHERE sentences MATCH ?", (f'"{word}"',)
            ):
                counts[number] += 1
        ranks = dict(
            db.execute(
                "SELECT rowid, bm25(sentences) FROM sentences WHERE sentences MATCH ?",
                (passage_match_query(question),),
            ).fetchall()
        )
    most_words = max(counts)
    if most_words == 0:
        return []
    best = [number for number in range(len(spans)) if counts[number] == most_words]
    best.sort(key=lambda number: ranks.get(number, 0.0))  # bm25() is negated: smaller is better
    return sorted(spans[number] for number in best[:most])


def build_context(
    index: PassageSource,
    question: str,
    count_tokens: Callable[[str], int],
    budget_tokens: int,
    *,
    candidates: int = 12,
) -> DocumentContext:
    """The excerpts most relevant to ``question`` that fit ``budget_tokens``, to go before it in its turn.

    Only the hits that matter are used (``relevant_hits``): the model gets exactly the passages shown as the
    answer's sources, and fewer, better excerpts make a shorter prompt and a small model less likely to answer
    from the wrong one. They are chosen best first and skipped when they would overflow the budget, then
    written in reading order, each under its document's name (not its page: see the module's docstring);
    ``hits`` stays best first, the order the sources are shown in.
    """
    hits = relevant_hits(index.search(question, limit=candidates)) or index.opening_passages()
    used = count_tokens(EXCERPTS_HEADER) + 8  # the chat template's wrapping of one message
    chosen: list[Hit] = []
    for hit in hits:
        cost = count_tokens(_excerpt(hit)) + 2
        if used + cost <= budget_tokens:
            chosen.append(hit)
            used += cost
    reading_order = sorted(chosen, key=lambda h: (h.passage.document_name, h.passage.position))
    text = "\n\n".join([EXCERPTS_HEADER, *(_excerpt(hit) for hit in reading_order)])
    return DocumentContext(text=text, hits=chosen, tokens=count_tokens(text))


def excerpts_for_question(
    source: PassageSource, question: str, context_size: int, reply_tokens: int
) -> DocumentContext:
    """The excerpts for ``question`` from ``source``, within the share of the context a reply of
    ``reply_tokens`` leaves them (``EXCERPT_BUDGET_SHARE`` of ``context_budget``)."""
    budget = int(context_budget(context_size, reply_tokens) * EXCERPT_BUDGET_SHARE)
    return build_context(source, question, approximate_tokens, budget)


def question_with_excerpts(context: DocumentContext, question: str) -> str:
    """The question's turn as the model reads it: the excerpts first, then the question."""
    return f"{context.text}\n\nQuestion: {question}" if context.hits else question


def _excerpt(hit: Hit) -> str:
    return f"[{hit.passage.document_name}]\n{hit.passage.text}"


def context_budget(context_size: int, reply_tokens: int) -> int:
    """Half of what the reply leaves free: the other half stays for the conversation itself."""
    return max(64, (context_size - reply_tokens) // 2)
