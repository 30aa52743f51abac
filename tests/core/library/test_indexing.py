"""Indexing libraries: what is read, what is kept, what is said about files that cannot be read."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from app.core.library.database import LibraryDatabase
from app.core.library.indexing import (
    IndexProgress,
    IndexReport,
    LibraryNotFound,
    define_library,
    index_library,
    list_libraries,
    remove_library,
)
from app.core.library.search import search_library
from tests.fixtures.documents import build_encrypted_pdf, build_pdf


def make_folder(root: Path) -> Path:
    """A folder as people keep them: notes, a PDF, code, a hidden folder, a binary, a link loop."""
    folder = root / "notes"
    (folder / "code").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / "todo.md").write_text(
        "# Groceries\n\nBuy oat milk and rye bread.\n\n# Garden\n\nPrune the quince tree.\n"
    )
    (folder / "code" / "tax.py").write_text("def vat(amount):\n    return amount * 0.21  # Dutch VAT rate\n")
    (folder / ".git" / "config").write_text("[core]\n")
    (folder / "photo.txt").write_bytes(bytes(range(256)) * 20)
    build_pdf(
        folder / "manual.pdf",
        [
            "The boiler pressure should read 1.5 bar.",
            "Bleed the radiators every autumn.",
            "Call 0800-123 for repairs.",
        ],
    )
    os.symlink(folder, folder / "code" / "loop")
    return folder


def count(db: LibraryDatabase, table: str) -> int:
    return int(db.connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_a_folder_is_indexed_with_one_reference_per_passage_and_a_sentence_per_bad_file(
    tmp_path: Path,
) -> None:
    folder = make_folder(tmp_path)
    db = LibraryDatabase(tmp_path / "library.sqlite3")
    define_library(db, "home", [folder], None)
    seen: list[IndexProgress] = []
    report = index_library(db, "home", progress=seen.append)

    assert (report.added, report.updated, report.removed) == (3, 0, 0)  # todo.md, tax.py, manual.pdf
    assert [Path(problem.path).name for problem in report.problems] == ["photo.txt"]
    assert "binary" in report.problems[0].sentence
    assert report.words_only
    assert seen[-1].files_done == seen[-1].files_total == 4
    paths = {Path(p).name for (p,) in db.connection.execute("SELECT path FROM files WHERE problem IS NULL")}
    assert paths == {"todo.md", "tax.py", "manual.pdf"}  # nothing from .git, the loop read nothing twice
    labels = {label for (label,) in db.connection.execute("SELECT label FROM passages")}
    assert {"page 1", "page 2", "page 3"} <= labels  # PDF passages never cross a page
    assert count(db, "passages") == count(db, "passage_text") == report.passages
    hits = search_library(db, "home", "boiler pressure")
    assert hits[0].label == "page 1" and Path(hits[0].path).name == "manual.pdf"
    [summary] = list_libraries(db)
    assert (summary.files, summary.passages, summary.problems) == (4, report.passages, 1)


def test_adding_again_reads_only_what_changed(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    db = LibraryDatabase(tmp_path / "library.sqlite3")
    define_library(db, "home", [folder], None)
    first = index_library(db, "home")

    again = index_library(db, "home")
    assert (again.added, again.updated, again.unchanged, again.passages) == (0, 0, 3, 0)

    os.utime(folder / "todo.md", ns=(1, 1))  # touched, same bytes: hashed, not read
    (folder / "code" / "tax.py").write_text("def vat(amount):\n    return amount * 0.09  # the low rate\n")
    (folder / "manual.pdf").unlink()
    changed = index_library(db, "home")
    assert (changed.added, changed.updated, changed.unchanged, changed.removed) == (0, 1, 1, 1)
    assert count(db, "passages") == count(db, "passage_text") < first.passages
    assert search_library(db, "home", "boiler") == []
    assert "0.09" in search_library(db, "home", "low rate")[0].text
    # The binary's sentence is kept and said again, without reading it again.
    assert [Path(p.path).name for p in changed.problems] == ["photo.txt"]


def test_bad_files_each_get_a_sentence_and_the_rest_is_indexed(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = build_pdf(folder / "good.pdf", ["Ferns like shade."])
    build_encrypted_pdf(folder / "locked.pdf", good, "secret")
    (folder / "private.txt").write_text("not for you")
    (folder / "private.txt").chmod(0)
    os.symlink(folder / "gone.txt", folder / "dangling.txt")
    db = LibraryDatabase(tmp_path / "library.sqlite3")
    define_library(db, "mixed", [folder], None)
    report = index_library(db, "mixed")
    problems = {Path(problem.path).name: problem.sentence for problem in report.problems}
    assert "good.pdf" not in problems and report.added >= 1
    assert "password" in problems["locked.pdf"].lower()
    assert "dangling.txt" in problems
    if os.geteuid() != 0:  # root reads any file
        assert "private.txt" in problems
    assert all(sentence.endswith(".") for sentence in problems.values())


def test_cancel_keeps_what_was_indexed_and_the_next_run_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for number in range(6):
        (folder / f"note{number}.txt").write_text(f"Note {number} about topic{number}.\n")
    db = LibraryDatabase(tmp_path / "library.sqlite3")
    define_library(db, "many", [folder], None)
    cancel = threading.Event()

    def stop_after_two(progress: IndexProgress) -> None:
        if progress.files_done == 2:
            cancel.set()

    stopped = index_library(db, "many", progress=stop_after_two, cancel=cancel)
    assert stopped.cancelled and stopped.added == 2
    resumed = index_library(db, "many")
    assert (resumed.added, resumed.unchanged, resumed.cancelled) == (4, 2, False)


def test_a_damaged_database_is_moved_aside_with_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "library.sqlite3"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    db = LibraryDatabase(path)
    assert "damaged" in db.notice and "moved aside" in db.notice
    assert list(tmp_path.glob("library.sqlite3.damaged-*"))
    define_library(db, "fresh", [], None)
    assert [library.name for library in list_libraries(db)] == ["fresh"]


def test_unknown_and_removed_libraries_are_named_in_a_sentence(tmp_path: Path) -> None:
    db = LibraryDatabase(tmp_path / "library.sqlite3")
    define_library(db, "a", [], None)
    remove_library(db, "a")
    with pytest.raises(LibraryNotFound, match='no library named "a"'):
        index_library(db, "a")
    assert count(db, "roots") == 0


def test_a_killed_index_keeps_whole_files_only(tmp_path: Path) -> None:
    """Each file is one transaction: a connection that stops mid-file (as a killed process does) leaves no
    passage of that file, and the next run indexes it whole."""
    folder = tmp_path / "kill"
    folder.mkdir()
    for number in range(3):
        (folder / f"part{number}.md").write_text(f"# Part {number}\n\nText of part {number}.\n")
    path = tmp_path / "library.sqlite3"
    db = LibraryDatabase(path)
    define_library(db, "kill", [folder], None)
    index_library(db, "kill")
    # A run that died inside a file's transaction: its rows were never committed.
    db.connection.execute("BEGIN")
    db.connection.execute("DELETE FROM passages")
    db.close()  # closing without commit rolls back, as a killed process's journal does on the next open
    db = LibraryDatabase(path)
    assert count(db, "passages") == count(db, "passage_text") > 0
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_huge_log_and_a_file_changing_while_read_each_get_a_sentence(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    with (folder / "server.log").open("wb") as huge:
        huge.truncate(2 * 1024**3)  # 2 GB on paper (sparse): refused by its size, never read
    moving = folder / "draft.md"
    moving.write_text("# Draft\n\nFirst words.\n")
    db = LibraryDatabase(tmp_path / "library.sqlite3")
    define_library(db, "logs", [folder], None)

    def edit_the_draft(progress: IndexProgress) -> None:
        if progress.current.endswith("draft.md"):  # after the folder was listed, before the file is read
            moving.write_text("# Draft\n\nFirst words, and more written meanwhile.\n")

    started = time.monotonic()
    report = index_library(db, "logs", progress=edit_the_draft)
    problems = {Path(problem.path).name: problem.sentence for problem in report.problems}
    assert "more than the" in problems["server.log"] and time.monotonic() - started < 60
    assert "changed while it was read" in problems["draft.md"]
    again = index_library(db, "logs")  # the draft is read again next time, now that it holds still
    assert again.added + again.updated == 1 and "draft.md" not in {Path(p.path).name for p in again.problems}


def test_indexing_waits_while_the_engine_answers_and_goes_on_after(
    tmp_path: Path, embedding_model_path: Path
) -> None:
    from app.core.llm.activity import EngineActivity

    folder = tmp_path / "notes"
    folder.mkdir()
    for number in range(6):
        (folder / f"note{number}.md").write_text(
            f"# Note {number}\n\nThe pump in room {number} was serviced.\n"
        )
    database = tmp_path / "library.sqlite3"
    db = LibraryDatabase(database)
    define_library(db, "notes", [folder], embedding_model_path)
    db.close()
    engine = EngineActivity()
    reports: list[IndexReport] = []

    def index() -> None:  # on a thread of its own, with its own connection, as the window's library thread
        own = LibraryDatabase(database)
        try:
            reports.append(index_library(own, "notes", yield_to=engine))
        finally:
            own.close()

    replying = engine.working()
    replying.__enter__()  # a reply is being written
    indexer = threading.Thread(target=index, daemon=True)
    try:
        indexer.start()
        indexer.join(1.5)
        assert indexer.is_alive() and not reports  # held before its first batch of passages
    finally:
        replying.__exit__(None, None, None)  # the reply is done
    indexer.join(60)
    assert not indexer.is_alive()
    assert reports[0].added == 6 and not reports[0].cancelled


def test_a_cancel_reaches_an_index_run_waiting_for_the_engine(
    tmp_path: Path, embedding_model_path: Path
) -> None:
    from app.core.llm.activity import EngineActivity

    folder = make_folder(tmp_path)
    db = LibraryDatabase(tmp_path / "library.sqlite3")
    define_library(db, "notes", [folder], embedding_model_path)
    engine = EngineActivity()
    cancel = threading.Event()
    with engine.working():
        threading.Timer(0.5, cancel.set).start()
        started = time.monotonic()
        report = index_library(db, "notes", yield_to=engine, cancel=cancel)
    assert report.cancelled and time.monotonic() - started < 10
    db.close()
