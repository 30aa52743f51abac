"""Opening the history file: private, durable, a newer file refused, a damaged one moved aside, one owner per
connection."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from app.core.errors import UserError
from app.core.history import database
from app.core.history.schema import MIGRATIONS
from app.core.history.store import HistoryStore
from app.core.paths import app_paths
from tests.fixtures.history_v1 import build_v1_database
from tests.helpers.history import file_hash, on_disk, paged_document

ALL_MIGRATIONS = [migration.name for migration in MIGRATIONS]


def test_new_history_is_private_wal_and_fully_migrated(store: HistoryStore) -> None:
    path = app_paths().history_db
    assert store.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert store.applied_migrations() == ALL_MIGRATIONS
    assert store.recovery_notice is None and store.backup_path is None
    pragma = store._connection.execute
    assert pragma("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert pragma("PRAGMA foreign_keys").fetchone()[0] == 1
    assert pragma("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "hello")
    for companion in path.parent.glob("history.sqlite3-*"):  # the WAL and its index carry the same text
        assert stat.S_IMODE(companion.stat().st_mode) == 0o600, companion


def test_existing_data_folder_is_made_private(tmp_path: Path) -> None:
    data_dir = app_paths().data_dir
    data_dir.mkdir(parents=True, mode=0o755)
    os.chmod(data_dir, 0o755)
    HistoryStore().close()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def test_database_from_a_newer_version_is_refused_and_untouched() -> None:
    path = app_paths().history_db
    path.parent.mkdir(parents=True)
    build_v1_database(path)
    connection = sqlite3.connect(path)
    connection.execute("INSERT INTO schema_migrations VALUES ('0099_from_the_future', 0)")
    connection.commit()
    connection.close()
    before = file_hash(path)
    files_before = sorted(p.name for p in path.parent.iterdir())

    with pytest.raises(UserError, match="newer version of LlamaDesk") as raised:
        HistoryStore()
    assert "0099_from_the_future" in str(raised.value)
    assert "nothing in it was changed" in str(raised.value)
    assert file_hash(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == files_before


def corrupt_copies(folder: Path) -> list[Path]:
    """The moved-aside database files (their -wal and -shm companions, if any, travel with them)."""
    return sorted(
        p for p in folder.iterdir() if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))
    )


def test_garbage_file_is_moved_aside_and_a_fresh_history_started() -> None:
    path = app_paths().history_db
    path.parent.mkdir(parents=True)
    garbage = os.urandom(8192)
    path.write_bytes(garbage)

    store = HistoryStore()
    [moved] = corrupt_copies(path.parent)
    assert moved.read_bytes() == garbage  # moved, never deleted or changed
    assert store.recovery_notice is not None
    assert str(moved) in store.recovery_notice and "damaged" in store.recovery_notice
    assert store.list_conversations() == []
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "a fresh start")
    assert store.integrity_check() == ["ok"]


def test_truncated_database_is_moved_aside() -> None:
    path = app_paths().history_db
    store = HistoryStore()
    for index in range(40):
        conversation = store.create_conversation()
        store.add_message(conversation.id, "user", f"message {index} " + "padding " * 200)
    store.close()  # the last connection folds the WAL into the file
    data = path.read_bytes()
    assert len(data) > 40_000
    path.write_bytes(data[: len(data) // 2])

    fresh = HistoryStore()
    [moved] = corrupt_copies(path.parent)
    assert moved.stat().st_size == len(data) // 2
    assert fresh.recovery_notice is not None
    assert fresh.count_conversations() == 0


def test_a_sqlite_file_that_is_not_a_history_is_moved_aside() -> None:
    path = app_paths().history_db
    path.parent.mkdir(parents=True)
    on_disk(path, "CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    store = HistoryStore()
    assert (
        store.recovery_notice is not None and "not a LlamaDesk conversation history" in store.recovery_notice
    )
    [moved] = corrupt_copies(path.parent)
    assert on_disk(moved, "SELECT name FROM sqlite_master") == [("photos",)]


def in_thread(work: Callable[[], object]) -> object:
    """Run ``work`` on a new thread; its result, or the exception it raised."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    return outcome[0]


def test_a_store_is_used_only_by_the_thread_that_opened_it(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    assert isinstance(in_thread(lambda: store.get_conversation(conversation.id)), sqlite3.ProgrammingError)
    assert isinstance(
        in_thread(lambda: store.add_message(conversation.id, "user", "hi")), sqlite3.ProgrammingError
    )
    assert isinstance(in_thread(store.close), sqlite3.ProgrammingError)
    assert store.messages(conversation.id) == []  # and it still works on its own thread


def test_another_thread_opens_its_own_store_cheaply_beside_the_first(
    store: HistoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = store.create_conversation()
    recorder = store.begin_reply(conversation.id)
    recorder.append("Still being written")  # a live reply the second open must not take for a dead one
    document = paged_document()

    def fail(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the file was checked or migrated again")

    monkeypatch.setattr(database, "_inspect", fail)
    monkeypatch.setattr(database, "migrate", fail)

    def attach() -> tuple[Path | None, int]:
        with HistoryStore() as other:
            return other.backup_path, other.add_document(conversation.id, document).id

    result = in_thread(attach)
    assert not isinstance(result, BaseException), result
    backup_path, document_id = cast(tuple[Path | None, int], result)
    assert backup_path is None
    assert [(stored.id, restored) for stored, restored in store.attached_documents(conversation.id)] == [
        (document_id, document)
    ]
    assert on_disk(store.path, "SELECT state FROM messages") == [("streaming",)]
    assert recorder.finish() is not None
