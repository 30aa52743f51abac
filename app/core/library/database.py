"""The library database: one SQLite file with every library, its folders, files, passages and vectors.

One owner: a ``LibraryDatabase`` belongs to the thread that opened it (sqlite3's ``check_same_thread``); another
thread that needs the libraries opens its own. Each file's passages and vectors are replaced in one transaction,
so a process killed mid-index leaves every file either as it was or fully indexed, and the next ``add`` goes on
from there. WAL journal: searches read while an index writes.

The database is an index of files the person keeps elsewhere, so damage costs time, not data: a file that is not
a database, or is damaged, is moved aside (never deleted) and a fresh one started, with a sentence saying so.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime
from pathlib import Path

from app.core.documents.retrieval import FTS_TOKENIZER
from app.core.errors import UserError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS libraries (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    embedding_model TEXT,            -- a GGUF file's path; NULL: words alone (BM25)
    dimensions INTEGER,              -- of the vectors stored for it, once some are
    revision INTEGER NOT NULL DEFAULT 0,  -- one more with every change to its passages: caches key on it
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS roots (
    library_id INTEGER NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    PRIMARY KEY (library_id, path)
);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    library_id INTEGER NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    passages INTEGER NOT NULL DEFAULT 0,
    problem TEXT,                    -- the sentence for a file that could not be indexed
    UNIQUE (library_id, path)
);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    label TEXT NOT NULL,
    page INTEGER,
    vector BLOB                      -- float32, unit length; NULL without an embedding model
);
CREATE INDEX IF NOT EXISTS passages_by_file ON passages(file_id);
-- ``library`` holds one token naming the passage's library (``library_token``), so a search filters by library
-- inside the full-text index and FTS5 ranks only that library's matches; its weight in the ranking is 0.
CREATE VIRTUAL TABLE IF NOT EXISTS passage_text USING fts5(text, library, tokenize = '{FTS_TOKENIZER}');
"""
RANKING = "INSERT INTO passage_text (passage_text, rank) VALUES ('rank', 'bm25(1.0, 0.0)')"


def library_token(ident: int) -> str:
    """The token that marks library ``ident``'s passages in the full-text index."""
    return f"library{ident}"


class LibraryDatabaseError(UserError):
    """The library database cannot be used; the sentence says why and what to do."""


class LibraryDatabase:
    """The open library database (see the module's docstring); ``notice`` is a sentence for the person when the
    file had to be moved aside, else empty."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.notice = ""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self.connection = self._open(path)
        except sqlite3.DatabaseError as damage:
            moved = _move_aside(path)
            log.warning("the library database %s was damaged (%s); moved to %s", path, damage, moved)
            self.notice = (
                f"The library index was damaged, so it was moved aside to {moved.name} and a new one started. "
                "Add your folders again to index them."
            )
            self.connection = self._open(path)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        connection = sqlite3.connect(path, timeout=30)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                connection.close()
                raise LibraryDatabaseError(
                    f"The library index {path} was written by a newer version of this app; update the app, or "
                    "move the file away to start a new index."
                )
            if version == 0:
                connection.executescript(SCHEMA)
                with connection:
                    connection.execute(RANKING)
                    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            connection.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        self.connection.close()


def _move_aside(path: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.replace(Path(f"{target}{suffix}"))
    return target
