"""Indexing a library: find its files, read the new and changed ones into passages (and vectors), drop the gone.

A file is read again only when it changed: same size and modification time means unchanged without opening it;
otherwise its sha256 decides (a file touched but not changed is not read again). Each file is committed on its
own, so a cancelled or killed run keeps every file it finished, and the next run goes on from there.

Files are read as attached documents are (``app.core.documents.reader``: a child process with time and memory
limits, so a hostile or huge file costs seconds, not the machine) and cut into the same passages, which never
cross a page or section. A file that cannot be read gets a sentence in the report and in the database; the rest
go on.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.core.documents.chunking import passages_of
from app.core.documents.document import DocumentError
from app.core.documents.reader import MAX_DOCUMENT_BYTES, document_kind, read_document
from app.core.errors import Cancelled, UserError
from app.core.files import file_sha256
from app.core.library.database import LibraryDatabase, library_token
from app.core.library.embedding import Embedder, checked_embedding_model
from app.core.llm.activity import EngineActivity
from app.core.units import human_bytes

log = logging.getLogger(__name__)

# Passages embedded per llama.cpp call: big enough to keep its batches full, small enough to cancel quickly.
EMBED_BATCH = 16


@dataclass(frozen=True)
class IndexProgress:
    """Where an index run is: files looked at of all found, passages written, seconds left (None until there is
    a measured rate), and the file being read."""

    files_done: int
    files_total: int
    passages: int
    seconds_left: float | None
    current: str


@dataclass(frozen=True)
class FileProblem:
    path: str
    sentence: str


@dataclass
class IndexReport:
    library: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    passages: int = 0
    problems: list[FileProblem] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False
    words_only: bool = False  # no embedding model: BM25 alone


@dataclass(frozen=True)
class LibrarySummary:
    name: str
    roots: list[str]
    embedding_model: str | None
    files: int
    passages: int
    problems: int


class LibraryNotFound(UserError):
    pass


def library_id(db: LibraryDatabase, name: str) -> int:
    row = db.connection.execute("SELECT id FROM libraries WHERE name = ?", (name,)).fetchone()
    if row is None:
        names = [n for (n,) in db.connection.execute("SELECT name FROM libraries ORDER BY name")]
        known = f" The libraries are: {', '.join(names)}." if names else " There are none yet."
        raise LibraryNotFound(f'There is no library named "{name}".{known}')
    return int(row[0])


def embedding_model_of(db: LibraryDatabase, ident: int) -> Path | None:
    """The GGUF embedding model library ``ident`` is searched by meaning with; None: by words alone."""
    (model,) = db.connection.execute(
        "SELECT embedding_model FROM libraries WHERE id = ?", (ident,)
    ).fetchone()
    return Path(model) if model else None


def define_library(db: LibraryDatabase, name: str, roots: list[Path], embedding_model: Path | None) -> int:
    """Create library ``name`` or add ``roots`` to it; a new embedding model means every file is read again (its
    vectors are of another model). A file that is no embedding model is refused before anything is stored, so a
    wrong choice never leaves the library unusable."""
    if not name.strip():
        raise UserError("A library needs a name, e.g. --name notes.")
    if embedding_model is not None:
        checked_embedding_model(embedding_model)
    with db.connection:
        db.connection.execute(
            "INSERT OR IGNORE INTO libraries (name, created) VALUES (?, ?)", (name, time.time())
        )
        ident = library_id(db, name)
        for root in roots:
            db.connection.execute(
                "INSERT OR IGNORE INTO roots (library_id, path) VALUES (?, ?)", (ident, str(root))
            )
        if embedding_model is not None:
            (current,) = db.connection.execute(
                "SELECT embedding_model FROM libraries WHERE id = ?", (ident,)
            ).fetchone()
            if current != str(embedding_model):
                db.connection.execute(
                    "UPDATE libraries SET embedding_model = ?, dimensions = NULL WHERE id = ?",
                    (str(embedding_model), ident),
                )
                db.connection.execute("UPDATE files SET sha256 = '' WHERE library_id = ?", (ident,))
    return ident


def remove_library(db: LibraryDatabase, name: str) -> None:
    ident = library_id(db, name)
    with db.connection:
        db.connection.execute(
            "DELETE FROM passage_text WHERE rowid IN (SELECT p.id FROM passages p JOIN files f ON f.id = p.file_id "
            "WHERE f.library_id = ?)",
            (ident,),
        )
        db.connection.execute("DELETE FROM libraries WHERE id = ?", (ident,))


def list_libraries(db: LibraryDatabase) -> list[LibrarySummary]:
    summaries = []
    for ident, name, model in db.connection.execute(
        "SELECT id, name, embedding_model FROM libraries ORDER BY name"
    ).fetchall():
        roots = [r for (r,) in db.connection.execute("SELECT path FROM roots WHERE library_id = ?", (ident,))]
        files, passages, problems = db.connection.execute(
            "SELECT count(*), coalesce(sum(passages), 0), count(problem) FROM files WHERE library_id = ?",
            (ident,),
        ).fetchone()
        summaries.append(LibrarySummary(name, roots, model, files, passages, problems))
    return summaries


def index_library(
    db: LibraryDatabase,
    name: str,
    *,
    progress: Callable[[IndexProgress], None] | None = None,
    cancel: threading.Event | None = None,
    threads: int | None = None,
    yield_to: EngineActivity | None = None,
) -> IndexReport:
    """Bring library ``name`` up to date with its folders and files; Cancelled is never raised: a cancelled run
    returns its report with ``cancelled`` set, and what it committed stays. With ``yield_to`` (the window's
    engine), each batch of passages waits while the engine answers: a reply in progress goes first."""
    started = time.monotonic()
    ident = library_id(db, name)
    report = IndexReport(name)
    cancel = cancel or threading.Event()
    model_path = embedding_model_of(db, ident)
    roots = [
        Path(r) for (r,) in db.connection.execute("SELECT path FROM roots WHERE library_id = ?", (ident,))
    ]
    found: dict[str, os.stat_result] = {}
    for path, problem in _library_files(roots):
        if problem:
            report.problems.append(FileProblem(str(path), problem))
        else:
            found[str(path)] = path.stat()
    known = {
        path: (file_id, size, mtime_ns, sha256, problem)
        for file_id, path, size, mtime_ns, sha256, problem in db.connection.execute(
            "SELECT id, path, size, mtime_ns, sha256, problem FROM files WHERE library_id = ?", (ident,)
        )
    }
    for path, (file_id, *_rest) in known.items():
        if path not in found:
            with db.connection:
                _delete_passages(db.connection, file_id)
                db.connection.execute("DELETE FROM files WHERE id = ?", (file_id,))
            report.removed += 1

    embedder = Embedder(model_path, threads=threads) if model_path else None
    report.words_only = embedder is None
    try:
        if embedder is not None:
            _check_dimensions(db, ident, embedder)
        bytes_total = sum(stat.st_size for stat in found.values()) or 1
        bytes_done = 0
        read_started = time.monotonic()
        for done, (file_path, stat) in enumerate(sorted(found.items())):
            if cancel.is_set():
                report.cancelled = True
                break
            if progress is not None:
                elapsed = time.monotonic() - read_started
                left = (
                    elapsed / bytes_done * (bytes_total - bytes_done)
                    if bytes_done and elapsed > 0.5
                    else None
                )
                progress(IndexProgress(done, len(found), report.passages, left, file_path))
            previous = known.get(file_path)
            try:
                outcome = _index_file(db, ident, Path(file_path), stat, previous, embedder, cancel, yield_to)
            except Cancelled:
                report.cancelled = True
                break
            bytes_done += stat.st_size
            if isinstance(outcome, FileProblem):
                report.problems.append(outcome)
            elif outcome is None:
                report.unchanged += 1
            else:
                report.passages += outcome
                if previous is None:
                    report.added += 1
                else:
                    report.updated += 1
        if progress is not None and not report.cancelled:
            progress(IndexProgress(len(found), len(found), report.passages, 0.0, ""))
    finally:
        if embedder is not None:
            embedder.close()
    report.seconds = time.monotonic() - started
    return report


def _check_dimensions(db: LibraryDatabase, ident: int, embedder: Embedder) -> None:
    (stored,) = db.connection.execute("SELECT dimensions FROM libraries WHERE id = ?", (ident,)).fetchone()
    if stored is None:
        with db.connection:
            db.connection.execute(
                "UPDATE libraries SET dimensions = ? WHERE id = ?", (embedder.dimensions, ident)
            )


def _library_files(roots: list[Path]) -> Iterator[tuple[Path, str]]:
    """Each readable file under ``roots`` once (resolved), with an empty problem; or a path and the sentence why
    it cannot be indexed. Symbolic links to folders are not followed (no loops); hidden folders (.git, .venv)
    and files of types this app does not read are skipped without a word, unless named as a root."""
    seen: set[Path] = set()
    for root in roots:
        if not root.exists():
            yield (
                root,
                f"{root} is not there any more (moved or deleted); remove it from the library or restore it.",
            )
            continue
        if root.is_file():
            candidates: Iterator[Path] = iter([root])
        else:
            candidates = _walk(root)
        for path in candidates:
            try:
                resolved = path.resolve(strict=True)
            except (OSError, RuntimeError):
                yield path, f"{path.name} is a link to nothing (or to itself); it was skipped."
                continue
            if resolved in seen:
                continue
            seen.add(resolved)
            if document_kind(resolved) is None:
                if path == root:
                    yield (
                        path,
                        f"{path.name} is not a kind of file this app reads (PDF, Word, text, Markdown, HTML, code).",
                    )
                continue
            yield resolved, ""


def _walk(root: Path) -> Iterator[Path]:
    for folder, subfolders, files in os.walk(
        root, followlinks=False, onerror=lambda error: log.info("%s", error)
    ):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def _index_file(
    db: LibraryDatabase,
    ident: int,
    path: Path,
    stat: os.stat_result,
    previous: tuple[int, int, int, str, str | None] | None,
    embedder: Embedder | None,
    cancel: threading.Event,
    yield_to: EngineActivity | None = None,
) -> int | FileProblem | None:
    """Passages written for ``path``; None when it was unchanged; a FileProblem when it could not be read."""
    if previous is not None:
        _file_id, size, mtime_ns, sha256, problem = previous
        if size == stat.st_size and mtime_ns == stat.st_mtime_ns:
            if problem:  # the same file as when it could not be read: the same sentence, not another try
                return FileProblem(str(path), problem)
            if sha256:
                return None
    if stat.st_size > MAX_DOCUMENT_BYTES:
        return _record_problem(
            db, ident, path, stat,
            f"{path.name} is {human_bytes(stat.st_size)}, more than the {human_bytes(MAX_DOCUMENT_BYTES)} a "
            "document may be; split it, or leave it out of the library.",
        )  # fmt: skip
    try:
        sha256 = file_sha256(path)
    except OSError as error:
        return _record_problem(db, ident, path, stat, f"{path.name} could not be opened ({error.strerror}).")
    if previous is not None and sha256 == previous[3] and not previous[4]:
        with db.connection:  # touched, not changed: remember the new time so it is not hashed again
            db.connection.execute(
                "UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?",
                (stat.st_size, stat.st_mtime_ns, previous[0]),
            )
        return None
    try:
        document = read_document(path, cancel=cancel)
    except DocumentError as error:
        return _record_problem(db, ident, path, stat, str(error))
    chunks = passages_of(document)  # cut in the reader's child process
    vectors: list[np.ndarray] = []
    if embedder is not None:
        for start in range(0, len(chunks), EMBED_BATCH):
            if yield_to is not None:
                yield_to.wait_until_idle(cancel)
            if cancel.is_set():
                raise Cancelled()
            vectors.extend(
                embedder.embed_passages([chunk.text for chunk in chunks[start : start + EMBED_BATCH]])
            )
    try:
        after = path.stat()
    except OSError:
        after = None
    if after is None or (after.st_size, after.st_mtime_ns) != (stat.st_size, stat.st_mtime_ns):
        return _record_problem(
            db, ident, path, stat, f"{path.name} changed while it was read; it will be read again next time.",
            retry=True,
        )  # fmt: skip
    with db.connection:
        file_id = _upsert_file(db.connection, ident, path, stat, sha256, len(chunks), None)
        _delete_passages(db.connection, file_id)
        for number, chunk in enumerate(chunks):
            page = document.sections[chunk.first_section].page
            vector = vectors[number].tobytes() if vectors else None
            cursor = db.connection.execute(
                "INSERT INTO passages (file_id, position, label, page, vector) VALUES (?, ?, ?, ?, ?)",
                (file_id, chunk.index, chunk.label, page, vector),
            )
            db.connection.execute(
                "INSERT INTO passage_text (rowid, text, library) VALUES (?, ?, ?)",
                (cursor.lastrowid, chunk.text, library_token(ident)),
            )
    return len(chunks)


def _record_problem(
    db: LibraryDatabase, ident: int, path: Path, stat: os.stat_result, sentence: str, *, retry: bool = False
) -> FileProblem:
    """Keep ``sentence`` as the file's problem, so an unchanged file is not tried again; with ``retry`` it is
    tried again next run whatever its time (it changed while read)."""
    with db.connection:
        file_id = _upsert_file(db.connection, ident, path, stat, "", 0, sentence, retry=retry)
        _delete_passages(db.connection, file_id)
    return FileProblem(str(path), sentence)


def _upsert_file(
    connection: sqlite3.Connection,
    ident: int,
    path: Path,
    stat: os.stat_result,
    sha256: str,
    passages: int,
    problem: str | None,
    *,
    retry: bool = False,
) -> int:
    connection.execute(
        "INSERT INTO files (library_id, path, size, mtime_ns, sha256, passages, problem) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (library_id, path) DO UPDATE SET size = excluded.size, "
        "mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, passages = excluded.passages, "
        "problem = excluded.problem",
        (ident, str(path), stat.st_size, -1 if retry else stat.st_mtime_ns, sha256, passages, problem),
    )
    (file_id,) = connection.execute(
        "SELECT id FROM files WHERE library_id = ? AND path = ?", (ident, str(path))
    ).fetchone()
    return int(file_id)


def _delete_passages(connection: sqlite3.Connection, file_id: int) -> None:
    """Remove a file's passages, counting it as a change of its library (``revision``), in the caller's
    transaction: every write of passages goes through here first."""
    connection.execute(
        "DELETE FROM passage_text WHERE rowid IN (SELECT id FROM passages WHERE file_id = ?)", (file_id,)
    )
    connection.execute("DELETE FROM passages WHERE file_id = ?", (file_id,))
    connection.execute(
        "UPDATE libraries SET revision = revision + 1 WHERE id = (SELECT library_id FROM files WHERE id = ?)",
        (file_id,),
    )
