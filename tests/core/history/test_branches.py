"""A conversation as a tree: versions of a question or a reply are siblings, nothing is replaced; the branch on
screen is remembered; an older database migrates; search, export and import keep every branch."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from app.core.history.export import branch_on_screen
from app.core.history.schema import MIGRATIONS
from app.core.history.store import HistoryStore
from app.core.paths import app_paths
from tests.fixtures.history_v1 import V1_MESSAGES
from tests.fixtures.history_v5 import INTERLEAVED_ID, V5_MESSAGES, build_v5_database
from tests.helpers.history import dump, on_disk


def contents(store: HistoryStore, conversation_id: int) -> list[str]:
    return [m.content for m in store.messages(conversation_id)]


def branched(store: HistoryStore) -> tuple[int, dict[str, int]]:
    """A conversation whose second question was edited once and whose last reply was written twice:

    Q1 - A1 - Q2  - A2
            \\ Q2b - A2b
                   \\ A2c   (on screen)
    """
    conversation = store.create_conversation()
    ids: dict[str, int] = {}
    for name, role, text in (("q1", "user", "First question"), ("a1", "assistant", "First answer")):
        ids[name] = store.add_message(conversation.id, role, text).id
    ids["q2"] = store.add_message(conversation.id, "user", "Second question about lighthouses").id
    ids["a2"] = store.add_message(conversation.id, "assistant", "Second answer").id
    ids["q2b"] = store.add_message(conversation.id, "user", "Second question, edited", parent_id=ids["a1"]).id
    ids["a2b"] = store.add_message(conversation.id, "assistant", "Answer to the edit").id
    ids["a2c"] = store.add_message(
        conversation.id, "assistant", "Answer to the edit, again", parent_id=ids["q2b"]
    ).id
    return conversation.id, ids


def test_versions_are_siblings_and_the_branch_on_screen_is_remembered(store: HistoryStore) -> None:
    conversation_id, ids = branched(store)
    assert contents(store, conversation_id) == [
        "First question",
        "First answer",
        "Second question, edited",
        "Answer to the edit, again",
    ]
    assert len(store.all_messages(conversation_id)) == 7  # nothing was replaced
    shown = store.messages(conversation_id)
    positions = store.branch_positions(conversation_id, shown)
    assert set(positions) == {ids["q2b"], ids["a2c"]}  # only messages with other versions
    assert (positions[ids["q2b"]].index, positions[ids["q2b"]].count) == (1, 2)
    assert (positions[ids["a2c"]].index, positions[ids["a2c"]].count) == (1, 2)
    assert positions[ids["a2c"]].sibling_ids == (ids["a2b"], ids["a2c"])

    # "< 1/2" on the edited question: the old question, and what followed it most recently.
    store.switch_branch(conversation_id, ids["q2"])
    assert contents(store, conversation_id)[2:] == ["Second question about lighthouses", "Second answer"]
    store.close()
    reopened = HistoryStore()  # the branch on screen is stored, not only held in memory
    assert contents(reopened, conversation_id)[2:] == ["Second question about lighthouses", "Second answer"]
    # Back to the edit: the latest path below it ends with its newest reply.
    reopened.switch_branch(conversation_id, ids["q2b"])
    assert contents(reopened, conversation_id)[-1] == "Answer to the edit, again"
    reopened.switch_branch(conversation_id, ids["a2b"])
    assert contents(reopened, conversation_id)[-1] == "Answer to the edit"
    # A new message follows the branch on screen.
    reopened.add_message(conversation_id, "user", "Third question")
    assert contents(reopened, conversation_id)[-2:] == ["Answer to the edit", "Third question"]
    assert [m.content for m in reopened.recent_messages(conversation_id, 2)] == [
        "Answer to the edit",
        "Third question",
    ]
    reopened.close()


def test_switching_to_a_message_of_another_conversation_is_a_sentence(store: HistoryStore) -> None:
    conversation_id, _ids = branched(store)
    other = store.create_conversation()
    stranger = store.add_message(other.id, "user", "Elsewhere").id
    with pytest.raises(Exception, match="There is no message"):
        store.switch_branch(conversation_id, stranger)


def test_deleting_a_message_keeps_the_rest_of_the_tree(store: HistoryStore) -> None:
    conversation_id, ids = branched(store)
    store.delete_message(ids["a2c"])  # the end of the branch on screen
    assert contents(store, conversation_id)[-1] == "Second question, edited"
    store.delete_message(ids["q2b"])  # a message with a child: the child moves up to its parent
    assert store.get_message(ids["a2b"]).parent_id == ids["a1"]
    assert len(store.all_messages(conversation_id)) == 5


def test_search_finds_text_in_any_branch(store: HistoryStore) -> None:
    conversation_id, ids = branched(store)  # "lighthouses" is only in the version not on screen
    hits = store.search("lighthouses")
    assert [(hit.conversation_id, hit.message_id) for hit in hits] == [(conversation_id, ids["q2"])]
    assert store.count_matches("lighthouses") == 1
    assert [s.id for s in store.list_conversations("lighthouses")] == [conversation_id]


def test_a_version_5_database_migrates_to_single_branch_trees() -> None:
    path = app_paths().history_db
    path.parent.mkdir(parents=True)
    build_v5_database(path)
    original = dump(path)

    store = HistoryStore()
    assert store.applied_migrations() == [m.name for m in MIGRATIONS]
    backup = store.backup_path
    assert backup is not None and dump(backup) == original
    for conversation_id in (1, 2, INTERLEAVED_ID):
        messages = store.all_messages(conversation_id)
        # Every message follows the one before it in its own conversation, and all of them are on screen.
        assert [m.parent_id for m in messages] == [None, *[m.id for m in messages[:-1]]]
        assert store.messages(conversation_id) == messages
        assert store.get_conversation(conversation_id).current_leaf_id == messages[-1].id
        assert store.branch_positions(conversation_id, messages) == {}
    expected_1 = [m[2] for m in V1_MESSAGES if m[0] == 1]
    assert contents(store, 1) == expected_1
    assert contents(store, INTERLEAVED_ID) == [m[2] for m in V5_MESSAGES if m[0] == INTERLEAVED_ID]
    assert contents(store, 2)[-2:] == [
        "And by the first item?",
        "Use sorted(items, key=lambda pair: pair[0]).",
    ]
    # The migrated conversation branches like a new one.
    first_answer = store.all_messages(1)[1]
    store.add_message(1, "user", "What about sea monsters?", parent_id=first_answer.id)
    assert contents(store, 1) == [*expected_1[:2], "What about sea monsters?"]
    store.close()
    assert on_disk(path, "SELECT count(*) FROM messages WHERE parent_id IS NULL") == [(3,)]


def test_migrating_a_long_conversation_is_quick() -> None:
    path = app_paths().history_db
    path.parent.mkdir(parents=True)
    build_v5_database(path)
    import sqlite3

    connection = sqlite3.connect(path)
    with connection:
        connection.executemany(
            "INSERT INTO messages (conversation_id, role, content, created_ms) VALUES (1, 'user', ?, 1)",
            [(f"message {n}",) for n in range(50_000)],
        )
    connection.close()
    started = time.perf_counter()
    store = HistoryStore()
    elapsed = time.perf_counter() - started
    print(f"migrating 50,010 messages to trees (with the backup): {elapsed:.2f} s")
    assert len(store.messages(1)) == 50_004
    started = time.perf_counter()
    page = store.recent_messages(1, 24)
    print(f"the newest page of a 50,004-message branch: {(time.perf_counter() - started) * 1000:.1f} ms")
    assert page[-1].content == "message 49999"
    store.close()
    assert elapsed < 30


# -- export and import -------------------------------------------------------------------------------------


def test_json_export_is_the_whole_tree_and_markdown_the_branch_on_screen(
    store: HistoryStore, tmp_path: Path
) -> None:
    conversation_id, ids = branched(store)
    store.switch_branch(conversation_id, ids["a2b"])
    exported = json.loads(store.export_json([conversation_id]))
    assert exported["version"] == 2
    conversation = exported["conversations"][0]
    assert len(conversation["messages"]) == 7
    assert conversation["current_message"] == ids["a2b"]
    assert [m["content"] for m in branch_on_screen(conversation)][-1] == "Answer to the edit"

    text = store.export_markdown([conversation_id])
    assert "Answer to the edit\n" in text and "Second answer" not in text and "again" not in text
    assert "3 message(s) of other versions are in the JSON export" in text

    other = HistoryStore(tmp_path / "other" / "history.sqlite3")
    result = other.import_json(json.dumps(exported))
    assert result.refused == [] and len(result.imported) == 1
    new_id = result.imported[0]
    assert contents(other, new_id) == contents(store, conversation_id)
    assert len(other.all_messages(new_id)) == 7
    shown = other.messages(new_id)
    assert [(p.index, p.count) for p in other.branch_positions(new_id, shown).values()] == [(1, 2), (0, 2)]
    again = json.loads(other.export_json([new_id]))["conversations"][0]
    assert [m["content"] for m in branch_on_screen(again)] == [
        m["content"] for m in branch_on_screen(conversation)
    ]
    other.close()


def test_import_of_a_linear_version_1_export_makes_one_branch(store: HistoryStore) -> None:
    conversation = {
        "uuid": "linear-1",
        "title": "Linear",
        "mode": "chat",
        "created": "2025-01-31T12:00:00+00:00",
        "updated": "2025-01-31T12:01:00+00:00",
        "messages": [
            {"role": "user", "content": "Hello", "created": "2025-01-31T12:00:00+00:00"},
            {"role": "assistant", "content": "Hi there", "created": "2025-01-31T12:00:10+00:00"},
            {"role": "user", "content": "Bye", "created": "2025-01-31T12:01:00+00:00"},
        ],
    }
    data = {"format": "llamadesk-history", "version": 1, "conversations": [conversation]}
    result = store.import_data(data)
    assert result.refused == []
    new_id = result.imported[0]
    messages = store.all_messages(new_id)
    assert [m.parent_id for m in messages] == [None, messages[0].id, messages[1].id]
    assert contents(store, new_id) == ["Hello", "Hi there", "Bye"]


def tree_export(messages: list[dict[str, Any]], current: Any = None) -> dict[str, Any]:
    base = {"role": "user", "content": "x", "created": "2025-01-31T12:00:00+00:00"}
    conversation: dict[str, Any] = {
        "uuid": "tree-" + hashlib.sha256((json.dumps(messages) + repr(current)).encode()).hexdigest(),
        "title": "Tree",
        "mode": "chat",
        "created": "2025-01-31T12:00:00+00:00",
        "updated": "2025-01-31T12:01:00+00:00",
        "messages": [{**base, **m} for m in messages],
    }
    if current is not None:
        conversation["current_message"] = current
    return {"format": "llamadesk-history", "version": 2, "conversations": [conversation]}


@pytest.mark.parametrize(
    ("messages", "current", "sentence"),
    [
        (
            [{"id": 1, "parent": None}, {"id": 2, "parent": 7}],
            None,
            "message 2: its parent 7 is not a message",
        ),
        ([{"id": 1, "parent": 2}, {"id": 2, "parent": 1}], None, "messages 1, 2 are each other's parents"),
        ([{"id": 1, "parent": 1}], None, "messages 1 are each other's parents"),
        ([{"id": 1, "parent": None}, {"id": 1, "parent": None}], None, "its id 1 is also message 1's"),
        ([{"id": 1, "parent": None}, {"parent": 1}], None, "message 2 has no id, but others"),
        ([{"id": "one", "parent": None}], None, "its id is text, not a message number"),
        ([{"id": 1, "parent": True}], None, "its parent is true or false"),
        ([{"id": 2**70, "parent": None}], None, "its id is a number, not a message number"),
        ([{"id": 1, "parent": None}], 5, "its current_message 5 is not one of its messages"),
    ],
)
def test_import_refuses_a_bad_tree_with_a_sentence(
    store: HistoryStore, messages: list[dict[str, Any]], current: Any, sentence: str
) -> None:
    good = tree_export([{"id": 10, "parent": None}, {"id": 11, "parent": 10, "role": "assistant"}])
    data = tree_export(messages, current)
    data["conversations"] += good["conversations"]
    result = store.import_data(data)
    assert len(result.refused) == 1 and sentence in result.refused[0]
    assert result.refused[0].startswith("Conversation 1 ('Tree') was not imported: ")
    assert len(result.imported) == 1  # the good one still comes in


def test_import_puts_parents_first_whatever_the_listed_order(store: HistoryStore) -> None:
    listed = [
        {"id": 3, "parent": 2, "content": "c", "role": "user"},
        {"id": 2, "parent": 1, "content": "b", "role": "assistant"},
        {"id": 1, "parent": None, "content": "a"},
        {"id": 4, "parent": 1, "content": "b2", "role": "assistant"},
    ]
    result = store.import_data(tree_export(listed, current=3))
    new_id = result.imported[0]
    assert contents(store, new_id) == ["a", "b", "c"]
    store.switch_branch(new_id, store.all_messages(new_id)[-1].id)
    assert contents(store, new_id) == ["a", "b2"]


def test_a_long_reversed_chain_imports_in_linear_time(store: HistoryStore) -> None:
    count = 20_000
    listed = [{"id": n, "parent": n - 1 if n else None} for n in reversed(range(count))]
    data = tree_export(listed)
    started = time.perf_counter()
    result = store.import_data(copy.deepcopy(data))
    elapsed = time.perf_counter() - started
    print(f"importing a {count:,}-message chain listed children first: {elapsed:.2f} s")
    assert result.refused == [] and len(store.messages(result.imported[0])) == count
    assert elapsed < 20
