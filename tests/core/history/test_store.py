"""The history store on real SQLite files: crash safety, migrations, recovery, search, export and import."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.core.errors import UserError
from app.core.history.store import (
    MIGRATIONS,
    ConversationNotFoundError,
    HistoryFormatError,
    HistoryStore,
    auto_title,
    fts_query,
    group_label,
)
from app.core.paths import app_paths
from tests.fixtures.history_crash_child import EARLIER_TURNS
from tests.fixtures.history_v1 import V1_CONVERSATIONS, V1_MESSAGES, V1_MIGRATION, build_v1_database

ROOT = Path(__file__).resolve().parents[3]
ALL_MIGRATIONS = [migration.name for migration in MIGRATIONS]


class FakeClock:
    """Stands in for time.monotonic so the once-a-second flush can be tested without sleeping."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def on_disk(path: Path, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """What another process would read now: a separate connection sees only committed data."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql, parameters).fetchall()
    finally:
        connection.close()


def dump(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store() -> HistoryStore:
    return HistoryStore()


# -- opening ------------------------------------------------------------------------------------------------


def test_new_history_is_private_wal_and_fully_migrated(store: HistoryStore) -> None:
    path = app_paths().history_db
    assert store.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert store.applied_migrations() == ALL_MIGRATIONS
    assert store.recovery_notice is None and store.backup_path is None
    with store._lock:
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


# -- pure helpers -------------------------------------------------------------------------------------------


def test_group_labels_by_calendar_day() -> None:
    zone = timezone(timedelta(hours=1))
    now = datetime(2026, 3, 10, 9, 0, tzinfo=zone)
    cases = {
        datetime(2026, 3, 10, 0, 0, tzinfo=zone): "Today",
        datetime(2026, 3, 10, 23, 0, tzinfo=zone): "Today",  # later today: a clock set back
        datetime(2026, 3, 9, 23, 59, tzinfo=zone): "Yesterday",
        datetime(2026, 3, 9, 0, 0, tzinfo=zone): "Yesterday",
        datetime(2026, 3, 8, 23, 59, tzinfo=zone): "Previous 7 days",
        datetime(2026, 3, 3, 0, 0, tzinfo=zone): "Previous 7 days",
        datetime(2026, 3, 2, 23, 59, tzinfo=zone): "Older",
        datetime(2025, 12, 31, 12, 0, tzinfo=zone): "Older",
        # 23:30 UTC on the 9th is 00:30 on the 10th in this zone: the user's calendar decides.
        datetime(2026, 3, 9, 23, 30, tzinfo=timezone.utc): "Today",
        datetime(2026, 3, 9, 22, 30, tzinfo=timezone.utc): "Yesterday",
    }
    assert {moment: group_label(moment, now) for moment in cases} == cases


def test_auto_title_is_one_short_line() -> None:
    assert auto_title("  What is   the capital\nof France?  ") == "What is the capital of France?"
    long = (
        "Please explain in detail how the quick brown fox jumps over the lazy dog and why it matters so much"
    )
    title = auto_title(long)
    assert len(title) <= 60
    assert title.endswith("…")
    assert long.startswith(title[:-1])
    assert title[-2] != " "


def test_fts_query_quotes_every_word() -> None:
    assert fts_query('capital "of" France') == '"capital" """of""" "France"'
    assert fts_query("fran", prefix_last=True) == '"fran"*'
    assert fts_query("f", prefix_last=True) == '"f"'  # one letter would match hundreds of words
    assert fts_query(" -- ( * ) ") is None


# -- messages, replies, continuity --------------------------------------------------------------------------


def test_conversation_is_restored_with_its_turns_after_reopening(store: HistoryStore) -> None:
    settings = {"system_prompt": "Be brief.", "temperature": 0.2, "max_tokens": 256}
    conversation = store.create_conversation(mode="code", model="/models/coder.gguf", settings=settings)
    store.add_message(conversation.id, "user", "Reverse a string in Python.")
    recorder = store.begin_reply(conversation.id)
    recorder.append("Use ")
    recorder.append("text[::-1].")
    stats = {"prompt_tokens": 30, "evaluated_tokens": 30, "generated_tokens": 6, "finish_reason": "stop"}
    recorder.finish("complete", stats)
    store.add_message(conversation.id, "user", "And a list?")
    store.close()

    reopened = HistoryStore()
    restored = reopened.get_conversation(conversation.id)
    assert (restored.mode, restored.model, restored.settings) == ("code", "/models/coder.gguf", settings)
    assert restored.title == "Reverse a string in Python."
    assert reopened.chat_messages(conversation.id, system_prompt="Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Reverse a string in Python."},
        {"role": "assistant", "content": "Use text[::-1]."},
        {"role": "user", "content": "And a list?"},
    ]
    reply = reopened.messages(conversation.id)[1]
    assert (reply.state, reply.prompt_tokens, reply.evaluated_tokens, reply.generated_tokens) == (
        "complete",
        30,
        30,
        6,
    )
    assert reply.stats == stats


def test_user_message_is_committed_before_any_reply(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "Is this saved yet?")
    assert on_disk(store.path, "SELECT role, content, state FROM messages") == [
        ("user", "Is this saved yet?", "complete")
    ]


def test_reply_row_is_rewritten_at_most_once_a_second(store: HistoryStore) -> None:
    clock = FakeClock()
    conversation = store.create_conversation()
    recorder = store.begin_reply(conversation.id, clock=clock)
    recorder.append("")
    assert on_disk(store.path, "SELECT count(*) FROM messages") == [(0,)]  # no row before the first text

    recorder.append("Once")
    assert on_disk(store.path, "SELECT content, state FROM messages") == [("Once", "streaming")]
    clock.now += 0.5
    recorder.append(" upon")
    assert on_disk(store.path, "SELECT content FROM messages") == [("Once",)]  # not yet a second
    clock.now += 0.5
    recorder.append(" a time")
    assert on_disk(store.path, "SELECT content FROM messages") == [("Once upon a time",)]
    assert recorder.writes == 2
    clock.now += 0.2
    recorder.append(",")
    message = recorder.finish("stopped", {"generated_tokens": 5})
    assert message is not None
    assert on_disk(store.path, "SELECT content, state, generated_tokens FROM messages") == [
        ("Once upon a time,", "stopped", 5)
    ]


def test_deleted_message_leaves_the_conversation_and_the_search(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "Name a marsupial")
    reply = store.add_message(conversation.id, "assistant", "The wombat.")
    store.delete_message(reply.id)  # regenerating the reply
    assert [m.content for m in store.messages(conversation.id)] == ["Name a marsupial"]
    assert store.search("wombat") == []


def test_reply_stopped_before_its_first_word_leaves_no_row(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    assert store.begin_reply(conversation.id).finish("stopped") is None
    assert store.messages(conversation.id) == []


def test_reply_that_fails_midway_is_kept_as_interrupted(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    with pytest.raises(RuntimeError), store.begin_reply(conversation.id) as recorder:
        recorder.append("Half a")
        raise RuntimeError("the engine failed")
    [message] = store.messages(conversation.id)
    assert (message.content, message.state) == ("Half a", "interrupted")


def test_reply_left_streaming_is_marked_interrupted_on_open(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "Tell me a story.")
    recorder = store.begin_reply(conversation.id)
    recorder.append("Once upon")
    store.close()  # the process ends without finishing the reply

    reopened = HistoryStore()
    _user, reply = reopened.messages(conversation.id)
    assert (reply.content, reply.state) == ("Once upon", "interrupted")
    reopened.add_message(conversation.id, "user", "Go on.")  # and the conversation can go on
    assert [m["role"] for m in reopened.chat_messages(conversation.id)] == ["user", "assistant", "user"]


def test_a_live_reply_taken_for_dead_by_another_process_recovers(store: HistoryStore) -> None:
    clock = FakeClock()
    conversation = store.create_conversation()
    recorder = store.begin_reply(conversation.id, clock=clock)
    recorder.append("Still")
    HistoryStore().close()  # a second process opens the history meanwhile
    assert on_disk(store.path, "SELECT state FROM messages") == [("interrupted",)]
    clock.now += 1
    recorder.append(" going")
    assert on_disk(store.path, "SELECT state FROM messages") == [("streaming",)]
    recorder.finish()
    assert on_disk(store.path, "SELECT content, state FROM messages") == [("Still going", "complete")]


def test_reply_killed_mid_stream_survives_with_what_was_flushed(model_path: Path, tmp_path: Path) -> None:
    database = tmp_path / "history.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.history_crash_child", str(database), str(model_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # the reply has been rewritten once by the timed flush
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert line.startswith("{"), f"child ended early: {line!r} {child.stderr.read() if child.stderr else ''}"
    report = json.loads(line)
    assert child.returncode == -signal.SIGKILL

    store = HistoryStore(database)  # as the next start does, with the dead process's WAL still beside it
    assert store.recovery_notice is None
    assert on_disk(database, "PRAGMA integrity_check") == [("ok",)]
    messages = store.messages(report["conversation_id"])
    assert [(m.role, m.content) for m in messages[:3]] == EARLIER_TURNS
    assert all(m.state == "complete" for m in messages[:3])
    partial = messages[3]
    assert partial.id == report["message_id"]
    assert partial.state == "interrupted"
    assert partial.content and partial.content.startswith(report["saved"])
    assert store.integrity_check() == ["ok"]
    store.add_message(partial.conversation_id, "user", "Please go on.")
    assert len(store.chat_messages(partial.conversation_id)) == 5


# -- managing ------------------------------------------------------------------------------------------------


def test_list_is_newest_first_grouped_and_filterable(store: HistoryStore) -> None:
    first = store.create_conversation()
    store.add_message(first.id, "user", "Plan a trip to Lisbon")
    store.add_message(first.id, "assistant", "Start at the Alfama district.")
    second = store.create_conversation()
    store.add_message(second.id, "user", "Explain recursion")
    listed = store.list_conversations()
    assert [c.id for c in listed] == [second.id, first.id]
    assert [c.group for c in listed] == ["Today", "Today"]
    assert [c.title for c in listed] == ["Explain recursion", "Plan a trip to Lisbon"]
    assert store.count_conversations() == 2
    assert [c.id for c in store.list_conversations(limit=1, offset=1)] == [first.id]
    assert [c.id for c in store.list_conversations("lisb")] == [first.id]  # title, as typed
    assert [c.id for c in store.list_conversations("alfa")] == [first.id]  # a message's word, as a prefix
    assert store.list_conversations("nothing like this") == []
    tomorrow = datetime.now() + timedelta(days=8)
    assert {c.group for c in store.list_conversations(now=tomorrow)} == {"Older"}


def test_rename_and_its_errors(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    store.rename_conversation(conversation.id, "  Trip\nplans ")
    store.add_message(conversation.id, "user", "This would have been the automatic title")
    assert store.get_conversation(conversation.id).title == "Trip plans"
    with pytest.raises(UserError, match="cannot be empty"):
        store.rename_conversation(conversation.id, "   ")
    with pytest.raises(ConversationNotFoundError, match="no conversation 999"):
        store.rename_conversation(999, "x")


def test_delete_goes_to_trash_restore_brings_back_purge_removes(store: HistoryStore) -> None:
    kept = store.create_conversation()
    store.add_message(kept.id, "user", "keep this one about otters")
    doomed = store.create_conversation()
    store.add_message(doomed.id, "user", "delete this one about otters")
    store.add_document(doomed.id, "notes.txt", "hash", "otters")

    store.delete_conversation(doomed.id)
    assert [c.id for c in store.list_conversations()] == [kept.id]
    assert [c.id for c in store.list_trash()] == [doomed.id]
    assert {hit.conversation_id for hit in store.search("otters")} == {kept.id}

    store.restore_conversation(doomed.id)
    assert {hit.conversation_id for hit in store.search("otters")} == {kept.id, doomed.id}

    store.delete_conversation(doomed.id)
    assert store.purge_trash(older_than=timedelta(days=30)) == 0  # deleted just now: kept for undo
    assert store.purge_trash() == 1
    with pytest.raises(ConversationNotFoundError):
        store.get_conversation(doomed.id)
    assert on_disk(store.path, "SELECT count(*) FROM messages") == [(1,)]
    assert on_disk(store.path, "SELECT count(*) FROM documents") == [(0,)]
    # The search index followed the delete (external-content tables must be kept in step by the triggers).
    on_disk(store.path, "INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
    assert store.count_matches("otters") == 1


# -- search ----------------------------------------------------------------------------------------------------


def test_search_finds_a_word_from_an_old_message_with_a_marked_snippet(store: HistoryStore) -> None:
    old = store.create_conversation()
    store.add_message(old.id, "user", "What does a narwhal use its tusk for?")
    store.add_message(old.id, "assistant", "The narwhal's tusk is a sensory organ; a narwhal has one tusk.")
    for index in range(30):
        later = store.create_conversation()
        store.add_message(later.id, "user", f"Unrelated question number {index}")
    store.close()

    reopened = HistoryStore()
    hits = reopened.search("NARWHAL tusk")
    assert [hit.conversation_id for hit in hits] == [old.id, old.id]
    assert hits[0].role == "assistant"  # more occurrences: the better match comes first
    assert "«narwhal" in hits[0].snippet.lower() and "«tusk»" in hits[0].snippet
    assert hits[0].score <= hits[1].score
    assert reopened.search("narwhals") == []  # whole words, not prefixes


def test_search_skips_trashed_hits_even_when_they_rank_first(store: HistoryStore) -> None:
    live = store.create_conversation()
    store.add_message(
        live.id, "user", "A long message that mentions the quokka once among many other words here."
    )
    store.add_message(
        live.id, "user", "Another long message, and the quokka again, with plenty of other words."
    )
    for _ in range(20):
        trashed = store.create_conversation()
        store.add_message(trashed.id, "user", "quokka quokka")  # short and dense: ranks above the live ones
        store.delete_conversation(trashed.id)
    hits = store.search("quokka", limit=2)
    assert [hit.conversation_id for hit in hits] == [live.id, live.id]
    assert all("«quokka»" in hit.snippet for hit in hits)


def test_search_survives_query_syntax_typed_by_a_user(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", 'The "AND" operator, (OR) NEAR: star* here')
    for text in ['"AND', "(OR", "NEAR:", "star*", "- ^ :", "a AND OR NOT", "'"]:
        store.search(text)  # never an FTS syntax error
    assert len(store.search('"AND" (OR)')) == 1
    assert store.search("   ") == []


def test_documents_are_attached_and_listed(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    text = "Page one text.Page two text."
    document = store.add_document(
        conversation.id,
        "report.pdf",
        "sha256:abc",
        text,
        page_starts=[0, 14],
        token_count=8,
        meta={"pages": 2},
    )
    assert document.pages == ["Page one text.", "Page two text."]
    store.set_document_summary(document.id, "Two pages of text.")
    [listed] = store.documents_for(conversation.id)
    assert (listed.name, listed.summary, listed.token_count, listed.meta) == (
        "report.pdf",
        "Two pages of text.",
        8,
        {"pages": 2},
    )
    store.remove_document(document.id)
    assert store.documents_for(conversation.id) == []


# -- export and import ------------------------------------------------------------------------------------------


def fill_for_export(store: HistoryStore) -> None:
    chat = store.create_conversation(mode="chat", model="/m/a.gguf", settings={"temperature": 0.7})
    store.add_message(chat.id, "user", "Écris un haïku sur la mer 🌊")
    store.add_message(
        chat.id,
        "assistant",
        "Vagues sur le sable\nle sel\nsilence",
        stats={"prompt_tokens": 20, "generated_tokens": 9, "finish_reason": "stop"},
    )
    store.add_message(chat.id, "assistant", "Partial", state="stopped")
    store.add_document(chat.id, "poem.txt", "h1", "The sea.", page_starts=[0], summary="A poem.")
    code = store.create_conversation(mode="code", settings={})
    store.add_message(code.id, "user", "print hello")
    store.rename_conversation(code.id, "Hello world")


def test_json_export_import_round_trip(store: HistoryStore, tmp_path: Path) -> None:
    fill_for_export(store)
    exported = json.loads(store.export_json())
    assert len(exported["conversations"]) == 2

    other = HistoryStore(tmp_path / "other" / "history.sqlite3")
    result = other.import_json(json.dumps(exported))
    assert len(result.imported) == 2 and result.skipped == 0
    again = json.loads(other.export_json())
    assert again["conversations"] == exported["conversations"]

    twice = other.import_json(json.dumps(exported))
    assert (twice.imported, twice.skipped) == ([], 2)
    assert other.count_conversations() == 2


def test_export_of_one_conversation_and_markdown(store: HistoryStore) -> None:
    fill_for_export(store)
    first = store.list_conversations()[-1]
    data = store.export_data([first.id])
    assert [c["title"] for c in data["conversations"]] == ["Écris un haïku sur la mer 🌊"]
    markdown = store.export_markdown()
    assert markdown.startswith("# Écris un haïku sur la mer 🌊\n")
    assert "## You · " in markdown and "## Assistant · " in markdown
    assert "(stopped)" in markdown
    assert "- Attached: poem.txt" in markdown
    assert "# Hello world" in markdown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "something-else"}', "not a LlamaDesk history export"),
        ('{"format": "llamadesk-history", "version": 99, "conversations": []}', "newer version"),
        ('{"format": "llamadesk-history", "version": 1, "conversations": [{"title": "x"}]}', "damaged"),
    ],
)
def test_import_rejects_what_is_not_an_export(store: HistoryStore, text: str, message: str) -> None:
    with pytest.raises(HistoryFormatError, match=message):
        store.import_json(text, "export.json")


def test_import_with_one_bad_conversation_adds_nothing(store: HistoryStore, tmp_path: Path) -> None:
    fill_for_export(store)
    data = store.export_data()
    data["conversations"][1]["messages"][0]["role"] = "wizard"
    other = HistoryStore(tmp_path / "other" / "history.sqlite3")
    with pytest.raises(HistoryFormatError, match="nothing was imported"):
        other.import_data(data)
    assert other.count_conversations() == 0


# -- migrations, newer versions, damaged files ---------------------------------------------------------------


def test_version_1_database_is_backed_up_and_migrated_with_its_data() -> None:
    path = app_paths().history_db
    path.parent.mkdir(parents=True)
    build_v1_database(path)
    original = dump(path)

    store = HistoryStore()
    assert store.applied_migrations() == ALL_MIGRATIONS
    backup = store.backup_path
    assert backup is not None and backup.parent == path.parent
    assert backup.name.startswith("history.sqlite3.bak-v1-")
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert dump(backup) == original  # the copy holds exactly what version 1 left
    assert on_disk(backup, "SELECT name FROM schema_migrations") == [(V1_MIGRATION,)]
    assert on_disk(backup, "PRAGMA journal_mode") == [("delete",)]  # taken before the switch to WAL

    for conversation_id, title, mode, model, settings, _created, _updated in V1_CONVERSATIONS:
        conversation = store.get_conversation(conversation_id)
        assert (conversation.title, conversation.mode, conversation.model) == (title, mode, model)
        assert conversation.settings == json.loads(settings)
        assert conversation.uuid  # given one by the migration
        expected = [(m[1], m[2]) for m in V1_MESSAGES if m[0] == conversation_id]
        assert [(m.role, m.content) for m in store.messages(conversation_id)] == expected
    states = [m.state for m in store.messages(1)]
    assert states == ["complete", "complete", "complete", "interrupted"]  # it was left streaming
    assert store.messages(2)[1].stats == {"finish_reason": "stop"}
    # Features added by later migrations work on the old data.
    assert [hit.conversation_id for hit in store.search("dracones")] == [1]
    store.delete_conversation(2)
    store.add_document(1, "map.png.txt", "h", "A map.")
    store.close()

    again = HistoryStore()
    assert again.backup_path is None  # nothing left to migrate: no second copy
    assert len(list(path.parent.glob("history.sqlite3.bak-*"))) == 1


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
