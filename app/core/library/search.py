"""Searching a library by words and by meaning together.

Two rankings of the library's passages: BM25 over the FTS5 index (the exact names and numbers people ask about)
and cosine similarity of the question's vector to each passage's (the same thing said in other words). They are
fused by reciprocal rank fusion (Cormack et al., 2009): a passage scores the sum of 1 / (K + rank) over the
rankings it appears in. RRF needs no calibration between BM25's unbounded scores and cosines, and a passage both
rankings agree on rises above one only either finds.

Vectors are searched by an exact numpy scan over one float32 matrix per library, kept in memory while the
library is unchanged: 100,000 passages of 384 numbers are 150 MB and one matrix-vector product, a few
milliseconds, exact (no approximate index to tune or to miss a passage), and no extension to load into SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.core.documents.retrieval import Hit, Passage, PassageSource, passage_match_query, relevant_hits
from app.core.library.database import LibraryDatabase, library_token
from app.core.library.embedding import Embedder
from app.core.library.indexing import embedding_model_of, library_id

# RRF's constant, as in the paper and in most hybrid search engines: damps the weight of the very top ranks.
RRF_K = 60
# How deep each ranking is read before fusing.
CANDIDATES = 50


@dataclass(frozen=True)
class LibraryHit:
    """One passage found: its file, its reference ("page 7", 'section "Results"'), the page when it has one,
    its fused score (higher is better) and its text."""

    path: str
    label: str
    page: int | None
    score: float
    text: str
    position: int = field(default=0, compare=False)  # the passage's order within its file

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "label": self.label,
            "page": self.page,
            "score": self.score,
            "text": self.text,
        }


class VectorCache:
    """Each library's passage vectors as one matrix, read again only when the library changed. Belongs to the
    thread that owns its database connection."""

    def __init__(self) -> None:
        self._matrices: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}

    def matrix(self, db: LibraryDatabase, ident: int) -> tuple[np.ndarray, np.ndarray]:
        """Passage ids and their vectors (one row each) of library ``ident``."""
        (revision,) = db.connection.execute(
            "SELECT revision FROM libraries WHERE id = ?", (ident,)
        ).fetchone()
        cached = self._matrices.get(ident)
        if cached is not None and cached[0] == revision:
            return cached[1], cached[2]
        rows = db.connection.execute(
            "SELECT p.id, p.vector FROM passages p JOIN files f ON f.id = p.file_id "
            "WHERE f.library_id = ? AND p.vector IS NOT NULL ORDER BY p.id",
            (ident,),
        ).fetchall()
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        vectors = (
            np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), -1)
            if rows
            else np.zeros((0, 0), dtype=np.float32)
        )
        self._matrices[ident] = (revision, ids, vectors)
        return ids, vectors


def search_library(
    db: LibraryDatabase,
    name: str,
    query: str,
    *,
    top: int = 5,
    embedder: Embedder | None = None,
    vectors: VectorCache | None = None,
) -> list[LibraryHit]:
    """The ``top`` passages of library ``name`` that best answer ``query``, best first: by words alone without
    an ``embedder``, else words and meaning fused."""
    ident = library_id(db, name)
    rankings = [word_ranking(db, ident, query)]
    if embedder is not None:
        rankings.append(meaning_ranking(db, ident, query, embedder, vectors or VectorCache()))
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, passage_id in enumerate(ranking):
            fused[passage_id] = fused.get(passage_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    best = sorted(fused.items(), key=lambda item: -item[1])[:top]
    return [_hit(db, passage_id, score) for passage_id, score in best]


def word_ranking(db: LibraryDatabase, ident: int, query: str) -> list[int]:
    """Passage ids by BM25, best first."""
    match = passage_match_query(query)
    if not match:
        return []
    rows = db.connection.execute(
        "SELECT rowid FROM passage_text WHERE passage_text MATCH ? ORDER BY rank LIMIT ?",
        (f'library : "{library_token(ident)}" AND ({match})', CANDIDATES),
    ).fetchall()
    return [int(row[0]) for row in rows]


def meaning_ranking(
    db: LibraryDatabase, ident: int, query: str, embedder: Embedder, vectors: VectorCache
) -> list[int]:
    """Passage ids by cosine similarity to the query's vector, best first."""
    ids, matrix = vectors.matrix(db, ident)
    if not len(ids) or not query.strip():
        return []
    if matrix.shape[1] != embedder.dimensions:
        return []  # vectors of another model: the next index run replaces them
    similarity = matrix @ embedder.embed_query(query)
    count = min(CANDIDATES, len(ids))
    best = np.argpartition(-similarity, count - 1)[:count]
    return [int(ids[i]) for i in best[np.argsort(-similarity[best])]]


def _hit(db: LibraryDatabase, passage_id: int, score: float) -> LibraryHit:
    path, label, page, text, position = db.connection.execute(
        "SELECT f.path, p.label, p.page, t.text, p.position FROM passages p JOIN files f ON f.id = p.file_id "
        "JOIN passage_text t ON t.rowid = p.id WHERE p.id = ?",
        (passage_id,),
    ).fetchone()
    return LibraryHit(path, label, page, round(score, 6), text, position)


@dataclass(frozen=True)
class LibraryFile:
    """A file of a library as the window lists it: its passages, or the sentence why it could not be read."""

    path: str
    passages: int
    problem: str | None


def library_files(db: LibraryDatabase, name: str, *, limit: int = 2000) -> list[LibraryFile]:
    """The files of library ``name``, those with a problem first, then by path; at most ``limit``."""
    rows = db.connection.execute(
        "SELECT path, passages, problem FROM files WHERE library_id = ? ORDER BY problem IS NULL, path LIMIT ?",
        (library_id(db, name), limit),
    ).fetchall()
    return [LibraryFile(path, int(passages), problem) for path, passages, problem in rows]


class LibraryPassages:
    """The libraries a conversation uses, as the passages its questions are answered from (a
    ``PassageSource``, as attached documents are). Belongs to the thread that owns ``db``; each library is
    searched with its own embedding model, loaded once."""

    def __init__(self, db: LibraryDatabase, names: list[str]) -> None:
        self.db = db
        self.names = names
        self.vectors = VectorCache()
        self._embedders: dict[str, Embedder | None] = {}
        for name in names:
            library_id(db, name)  # an unknown name is a sentence now, not at the first question

    def _embedder(self, name: str) -> Embedder | None:
        model = embedding_model_of(self.db, library_id(self.db, name))
        if model is None:
            return None
        if str(model) not in self._embedders:
            self._embedders[str(model)] = Embedder(model)
        return self._embedders[str(model)]

    def preload(self) -> None:
        """Load each library's embedding model now (about half a second each), so the first question does not
        wait for it."""
        for name in self.names:
            self._embedder(name)

    def search(self, question: str, limit: int = 8) -> list[Hit]:
        found: list[LibraryHit] = []
        for name in self.names:
            found += search_library(
                self.db, name, question, top=limit, embedder=self._embedder(name), vectors=self.vectors
            )
        found.sort(key=lambda hit: -hit.score)
        return [
            Hit(
                Passage(Path(hit.path).name, hit.path, hit.label, hit.page, hit.position, hit.text, hit.path),
                hit.score,
            )
            for hit in found[:limit]
        ]

    def opening_passages(self, limit: int = 3) -> list[Hit]:
        return []  # a library has no one beginning to read for "summarize this"

    def close(self) -> None:
        for embedder in self._embedders.values():
            if embedder is not None:
                embedder.close()
        self._embedders.clear()


class CombinedPassages:
    """Several passage sources as one: the documents attached to a conversation and the libraries it uses.

    Their scores are on different scales (BM25 for attached documents, fused ranks for libraries), so each
    source's relevant hits (``relevant_hits``, judged on its own scale) are fused by rank, as a library fuses
    words and meaning: the best of each source first, then the second of each, and so on."""

    def __init__(self, sources: list[PassageSource]) -> None:
        self.sources = sources

    def search(self, question: str, limit: int = 8) -> list[Hit]:
        fused: list[Hit] = []
        for source in self.sources:
            for rank, hit in enumerate(relevant_hits(source.search(question, limit))):
                fused.append(Hit(hit.passage, 1.0 / (RRF_K + rank + 1)))
        fused.sort(key=lambda hit: -hit.score)  # stable: at equal rank, the sources' order
        return fused[:limit]

    def opening_passages(self, limit: int = 3) -> list[Hit]:
        return [hit for source in self.sources for hit in source.opening_passages(limit)]
