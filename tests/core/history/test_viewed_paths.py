"""Each branch remembers the path last viewed below it: going back to a version of a message shows what the
person last saw there (their follow-up), not the newest path; a version never viewed shows its newest path. The
same rule for the export of a chosen version, after a deletion, after an import, and in a migrated history."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from app.core.history.export import branch_on_screen
from app.core.history.schema import MIGRATIONS, migrate
from app.core.history.store import HistoryStore
from app.core.paths import app_paths
from tests.helpers.history import dump, on_disk


def contents(store: HistoryStore, conversation_id: int) -> list[str]:
    return [m.content for m in store.messages(conversation_id)]


def followed_up(store: HistoryStore) -> tuple[int, dict[str, int]]:
    """A first question whose reply was written again after the person had asked a follow-up under the first
    reply, went back to it, and then edited the question:

    Q1  - A1  - Q2 - A2    (the follow-up, viewed after A1b was written)
        \\ A1b              (the newest path below Q1)
    Q1e - A1e              (on screen)
    """
    conversation = store.create_conversation()
    ids: dict[str, int] = {}
    ids["q1"] = store.add_message(conversation.id, "user", "Name a planet.").id
    ids["a1"] = store.add_message(conversation.id, "assistant", "Mars.").id
    ids["q2"] = store.add_message(conversation.id, "user", "How far is it from the Sun?").id
    ids["a2"] = store.add_message(conversation.id, "assistant", "About 228 million km.").id
    store.set_branch_end(conversation.id, ids["q1"])  # the reply written again, as the window does it
    ids["a1b"] = store.add_message(conversation.id, "assistant", "Jupiter.").id
    store.switch_branch(conversation.id, ids["a1"])  # "< 1/2" on the reply: back to the follow-up
    assert contents(store, conversation.id)[-1] == "About 228 million km."
    ids["q1e"] = store.add_message(conversation.id, "user", "Name a moon.", parent_id=None).id
    ids["a1e"] = store.add_message(conversation.id, "assistant", "Titan.").id
    return conversation.id, ids


FOLLOW_UP = ["Name a planet.", "Mars.", "How far is it from the Sun?", "About 228 million km."]


def test_going_back_to_an_edited_question_shows_the_follow_up_last_viewed(store: HistoryStore) -> None:
    conversation_id, ids = followed_up(store)
    assert contents(store, conversation_id) == ["Name a moon.", "Titan."]
    # The newest path below the first version is its rewritten reply; the person last saw the follow-up.
    assert max(m.id for m in store.all_messages(conversation_id) if m.parent_id == ids["q1"]) == ids["a1b"]
    for _ in range(2):  # back and forth: each version keeps its own path
        store.switch_branch(conversation_id, ids["q1"])
        assert contents(store, conversation_id) == FOLLOW_UP
        store.switch_branch(conversation_id, ids["q1e"])
        assert contents(store, conversation_id) == ["Name a moon.", "Titan."]

    # A reply version chosen below the first question is what that question shows from then on.
    store.switch_branch(conversation_id, ids["q1"])
    store.switch_branch(conversation_id, ids["a1b"])
    store.switch_branch(conversation_id, ids["q1e"])
    store.switch_branch(conversation_id, ids["q1"])
    assert contents(store, conversation_id) == ["Name a planet.", "Jupiter."]
    # ... and the reply's own version still leads to the follow-up below it.
    store.switch_branch(conversation_id, ids["a1"])
    assert contents(store, conversation_id) == FOLLOW_UP
    store.switch_branch(conversation_id, ids["q1e"])
    store.close()

    reopened = HistoryStore()  # remembered in the file, not only in memory
    assert contents(reopened, conversation_id) == ["Name a moon.", "Titan."]
    reopened.switch_branch(conversation_id, ids["q1"])
    assert contents(reopened, conversation_id) == FOLLOW_UP
    reopened.close()


def test_of_two_follow_ups_the_one_last_viewed_comes_back(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    q1 = store.add_message(conversation.id, "user", "Name a river.").id
    store.add_message(conversation.id, "assistant", "The Nile.")
    older = store.add_message(conversation.id, "user", "How long is it?").id
    store.add_message(conversation.id, "assistant", "About 6,650 km.")
    store.add_message(
        conversation.id, "user", "Where does it start?", parent_id=store.get_message(older).parent_id
    )
    store.add_message(conversation.id, "assistant", "In East Africa.")
    store.switch_branch(conversation.id, older)  # the older follow-up, last viewed
    store.add_message(conversation.id, "user", "Name a lake.", parent_id=None)
    store.add_message(conversation.id, "assistant", "Lake Victoria.")

    store.switch_branch(conversation.id, q1)
    assert contents(store, conversation.id)[2:] == ["How long is it?", "About 6,650 km."]


def test_a_version_never_viewed_shows_its_newest_path(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, "user", "Name a colour.").id
    store.add_message(conversation.id, "assistant", "Red.")
    # Written below the question by another route than the branch on screen (as an import or an older
    # version could leave it): nothing below the question was viewed through them.
    with sqlite3.connect(app_paths().history_db) as connection:
        connection.execute("UPDATE messages SET viewed_child_id = NULL")
        connection.execute(
            "INSERT INTO messages (conversation_id, role, content, created_ms, parent_id) "
            "VALUES (?, 'assistant', 'Blue.', 1, ?)",
            (conversation.id, question),
        )
    store.switch_branch(conversation.id, question)
    assert contents(store, conversation.id) == ["Name a colour.", "Blue."]


def test_deleting_a_message_of_a_remembered_path_keeps_the_rest_of_it(store: HistoryStore) -> None:
    conversation_id, ids = followed_up(store)
    store.delete_message(ids["q2"])  # its reply moves up below the first reply, and stays on the path
    store.switch_branch(conversation_id, ids["q1"])
    assert contents(store, conversation_id) == ["Name a planet.", "Mars.", "About 228 million km."]
    store.switch_branch(conversation_id, ids["q1e"])
    store.delete_message(ids["a1"])  # the remembered reply goes: its follow-up takes its place
    store.switch_branch(conversation_id, ids["q1"])
    assert contents(store, conversation_id) == ["Name a planet.", "About 228 million km."]


def test_the_export_of_a_chosen_version_is_its_path_last_viewed(store: HistoryStore) -> None:
    conversation_id, ids = followed_up(store)
    exported = store.export_data([conversation_id], version=ids["q1"])["conversations"][0]
    assert exported["current_message"] == ids["a2"]
    assert [m["content"] for m in branch_on_screen(exported)] == FOLLOW_UP
    text = store.export_markdown([conversation_id], version=ids["q1"])
    assert "About 228 million km." in text and "Titan." not in text and "Jupiter." not in text
    assert "- Shown: the version chosen;" in text
    assert json.loads(store.export_json([conversation_id], version=ids["q1"]))["conversations"][0] == exported
    # Exporting a version moves nothing in the window, and the plain export is the branch on screen.
    assert contents(store, conversation_id) == ["Name a moon.", "Titan."]
    assert "- Shown: the version on screen;" in store.export_markdown([conversation_id])
    assert store.branch_end_through(conversation_id, ids["q1e"]) == ids["a1e"]


def test_an_import_remembers_the_branch_on_screen_of_its_export(store: HistoryStore, tmp_path: Path) -> None:
    conversation_id, ids = followed_up(store)
    exported = store.export_json([conversation_id], version=ids["q1"])  # the follow-up on screen
    other = HistoryStore(tmp_path / "other" / "history.sqlite3")
    [new_id] = other.import_json(exported).imported
    assert contents(other, new_id) == FOLLOW_UP
    by_content = {m.content: m.id for m in other.all_messages(new_id)}
    other.switch_branch(new_id, by_content["Name a moon."])
    other.switch_branch(new_id, by_content["Name a planet."])
    assert contents(other, new_id) == FOLLOW_UP  # not "Jupiter.", the newest below it
    other.close()


def build_v7_database(path: Path) -> dict[str, int]:
    """A history as version 7 (migrations 0001-0007) wrote it, made by those released migrations: a question
    with two follow-ups whose older one is on screen, and a second version of the question. Returns its ids."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(connection, MIGRATIONS[:7])
        connection.execute("BEGIN")
        connection.execute(
            "INSERT INTO conversations (id, uuid, title, mode, created_ms, updated_ms) "
            "VALUES (1, 'uuid-v7', 'Rivers', 'chat', 1700000000000, 1700000000000)"
        )
        rows = [
            ("q1", None, "user", "Name a river."),
            ("a1", "q1", "assistant", "The Nile."),
            ("q2", "a1", "user", "How long is it?"),
            ("a2", "q2", "assistant", "About 6,650 km."),
            ("q2b", "a1", "user", "Where does it start?"),
            ("a2b", "q2b", "assistant", "In East Africa."),
            ("q1e", None, "user", "Name a lake."),
            ("a1e", "q1e", "assistant", "Lake Victoria."),
        ]
        ids: dict[str, int] = {}
        for number, (name, parent, role, content) in enumerate(rows, start=1):
            connection.execute(
                "INSERT INTO messages (id, conversation_id, role, content, created_ms, parent_id) "
                "VALUES (?, 1, ?, ?, ?, ?)",
                (number, role, content, 1_700_000_000_000 + number, None if parent is None else ids[parent]),
            )
            ids[name] = number
        connection.execute("UPDATE conversations SET current_leaf_id = ? WHERE id = 1", (ids["a2"],))
        connection.execute("COMMIT")
    finally:
        connection.close()
    return ids


def test_a_version_7_history_opens_with_everything_and_remembers_its_branch_on_screen() -> None:
    path = app_paths().history_db
    path.parent.mkdir(parents=True)
    ids = build_v7_database(path)
    original = dump(path)
    messages_before = on_disk(path, "SELECT id, conversation_id, role, content, parent_id FROM messages")

    store = HistoryStore()
    assert store.applied_migrations() == [m.name for m in MIGRATIONS]
    backup = store.backup_path
    assert (
        backup is not None and backup.name.startswith("history.sqlite3.bak-v7-") and dump(backup) == original
    )
    assert contents(store, 1) == ["Name a river.", "The Nile.", "How long is it?", "About 6,650 km."]
    # Away and back: the branch that was on screen is the path remembered, though not the newest.
    store.switch_branch(1, ids["q1e"])
    assert contents(store, 1) == ["Name a lake.", "Lake Victoria."]
    store.switch_branch(1, ids["q1"])
    assert contents(store, 1)[2:] == ["How long is it?", "About 6,650 km."]
    store.close()
    assert (
        on_disk(path, "SELECT id, conversation_id, role, content, parent_id FROM messages") == messages_before
    )


def test_adding_to_a_long_branch_stays_quick(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    with sqlite3.connect(app_paths().history_db) as connection:
        connection.executemany(
            "INSERT INTO messages (id, conversation_id, role, content, created_ms, parent_id, viewed_child_id) "
            "VALUES (?, ?, 'user', 'message', 1, ?, ?)",
            [(n, conversation.id, n - 1 if n > 1 else None, n + 1) for n in range(1, 20_001)],
        )
        connection.execute(
            "UPDATE conversations SET current_leaf_id = 20000 WHERE id = ?", (conversation.id,)
        )
    started = time.perf_counter()
    for _ in range(50):
        store.add_message(conversation.id, "user", "one more")
    elapsed = time.perf_counter() - started
    print(f"50 messages added to a 20,000-message branch: {elapsed * 1000:.0f} ms")
    assert elapsed < 10  # a walk up the whole branch at each one would be seconds
    store.switch_branch(conversation.id, 1)
    assert len(store.messages(conversation.id)) == 20_050
