"""Questions about attached documents: find the passages that answer them, and hand them to the model.

Each attached document is cut into short passages that never cross a page or section, so every passage has one
exact reference ("page 7"). The passages go into an SQLite FTS5 index and a question is matched against them
with BM25 ranking: no embedding model to download or run, and good at the names and numbers people ask about.
The best passages, as many as the token budget allows, become one block of excerpts, each under the name of its
document, that rides in the newest question's turn: the excerpts change with every question, and placed before the
history they would invalidate the model's cached evaluation of the whole conversation each turn.

The model is shown no page numbers and is not asked to cite any: a small model cites pages it makes up. The
exact pages come from the passages themselves (``DocumentContext.hits``), which the app shows under the answer.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from app.core.documents.chunking import chunk_document
from app.core.documents.document import Document
from app.core.documents.document import approximate_tokens as approximate_tokens  # the window's sizing

# Passages of about this many tokens: long enough to hold a fact with its context, short enough that several
# from different pages fit a small context.
PASSAGE_TOKENS = 160
EXCERPTS_HEADER = (
    "Excerpts from the attached documents, each under its document's name in square brackets. Answer the "
    "question from these excerpts, in your own words; if they do not hold the answer, say so."
)
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
    hits: list[Hit]  # the passages in ``text``, in its order: the sources shown under the answer
    tokens: int

    @property
    def references(self) -> list[str]:
        """Where the excerpts come from, in reading order: ["report.pdf, page 7", ...]."""
        return [hit.passage.reference for hit in self.hits]


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
            "position UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2')"
        )

    def close(self) -> None:
        self._db.close()

    def add(self, document: Document) -> int:
        """Index ``document`` (again, if it was already); returns how many passages it gave."""
        chunks = chunk_document(document, self._count_tokens, PASSAGE_TOKENS, keep_sections_apart=True)
        rows = [
            (
                chunk.text,
                document.name,
                document.content_hash,
                chunk.label,
                document.sections[chunk.first_section].page,
                chunk.index,
            )
            for chunk in chunks
        ]
        with self._db:
            self._db.execute("DELETE FROM passages WHERE document_hash = ?", (document.content_hash,))
            self._db.executemany(
                "INSERT INTO passages (text, document_name, document_hash, label, page, position) "
                "VALUES (?, ?, ?, ?, ?, ?)",
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
            "SELECT text, document_name, document_hash, label, page, position, bm25(passages) AS rank "
            "FROM passages WHERE passages MATCH ? ORDER BY rank LIMIT ?",
            (query, limit),
        ).fetchall()
        # SQLite's bm25() is negated so that smaller sorts first; flip it so a higher score means a better match.
        return [
            Hit(Passage(name, digest, label, page, int(position), text), -float(rank))
            for text, name, digest, label, page, position, rank in rows
        ]

    def opening_passages(self, limit: int = 3) -> list[Hit]:
        """The start of each document: the context for questions with no searchable words ("summarize this")."""
        rows = self._db.execute(
            "SELECT text, document_name, document_hash, label, page, position FROM passages "
            "WHERE position < ? ORDER BY document_name, position",
            (limit,),
        ).fetchall()
        return [
            Hit(Passage(name, digest, label, page, int(pos), text), 0.0)
            for text, name, digest, label, page, pos in rows
        ]


def passage_match_query(question: str) -> str:
    """An FTS5 query matching passages that share any meaningful word with ``question`` (ranked by BM25, so
    more shared words rank higher). Stopwords are left out, and each word is quoted, so punctuation or FTS
    operators typed by a person ("AND", "NEAR", a stray quote) can never make the query invalid.

    Not the history search's ``fts_query``: that one finds messages containing every word typed, as a person
    searching their conversations expects."""
    words: list[str] = []
    for word in re.findall(r"\w+", question.lower()):
        if len(word) > 1 and word not in _STOPWORDS and word not in words:
            words.append(word)
    return " OR ".join(f'"{word}"' for word in words)


def build_context(
    index: DocumentIndex,
    question: str,
    count_tokens: Callable[[str], int],
    budget_tokens: int,
    *,
    candidates: int = 12,
) -> DocumentContext:
    """The excerpts most relevant to ``question`` that fit ``budget_tokens``, to go before it in its turn.

    Passages are chosen best first and skipped when they would overflow the budget, then written in reading
    order, each under its document's name (not its page: see the module's docstring).
    """
    hits = index.search(question, limit=candidates) or index.opening_passages()
    used = count_tokens(EXCERPTS_HEADER) + 8  # the chat template's wrapping of one message
    chosen: list[Hit] = []
    for hit in hits:
        cost = count_tokens(_excerpt(hit)) + 2
        if used + cost <= budget_tokens:
            chosen.append(hit)
            used += cost
    chosen.sort(key=lambda h: (h.passage.document_name, h.passage.position))
    text = "\n\n".join([EXCERPTS_HEADER, *(_excerpt(hit) for hit in chosen)])
    return DocumentContext(text=text, hits=chosen, tokens=count_tokens(text))


def _excerpt(hit: Hit) -> str:
    return f"[{hit.passage.document_name}]\n{hit.passage.text}"


def context_budget(context_size: int, reply_tokens: int) -> int:
    """Half of what the reply leaves free: the other half stays for the conversation itself."""
    return max(64, (context_size - reply_tokens) // 2)
