"""The history store on real SQLite files: conversations, messages, the trash, attached documents."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.core.errors import UserError
from app.core.history.errors import ConversationNotFoundError
from app.core.history.store import HistoryStore
from tests.helpers.history import on_disk, paged_document, text_document


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


def test_a_finished_exchange_is_stored_whole_or_not_at_all(store: HistoryStore) -> None:
    conversation_id = store.add_conversation(
        [("system", "Be brief."), ("user", "Name a marsupial")],
        "The wombat.",
        reply_state="stopped",
        reply_stats={"generated_tokens": 3},
        settings={"served_through": "api"},
    )
    conversation = store.get_conversation(conversation_id)
    assert (conversation.title, conversation.settings) == ("Name a marsupial", {"served_through": "api"})
    assert [(m.role, m.content, m.state) for m in store.messages(conversation_id)] == [
        ("system", "Be brief.", "complete"),
        ("user", "Name a marsupial", "complete"),
        ("assistant", "The wombat.", "stopped"),
    ]
    # A message that cannot be stored takes the whole conversation with it: no untitled half is ever listed.
    with pytest.raises(ValueError):
        store.add_conversation([("user", "Hello"), ("narrator", "Meanwhile")], "Hi.")
    assert on_disk(store.path, "SELECT count(*) FROM conversations") == [(1,)]


def test_deleted_message_leaves_the_conversation_and_the_search(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "Name a marsupial")
    reply = store.add_message(conversation.id, "assistant", "The wombat.")
    store.delete_message(reply.id)  # regenerating the reply
    assert [m.content for m in store.messages(conversation.id)] == ["Name a marsupial"]
    assert store.search("wombat") == []


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
    store.add_document(doomed.id, text_document("notes.txt", "otters"))

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


def test_documents_are_attached_and_listed(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    document = store.add_document(conversation.id, paged_document(), token_count=8, meta={"pages": 3})
    [(_stored, restored)] = store.attached_documents(conversation.id)
    assert [s.text for s in restored.sections] == ["Page one text.", "", "Page three text,\nwith two lines."]
    store.set_document_summary(document.id, "Two pages of text.")
    [listed] = store.documents_for(conversation.id)
    assert (listed.name, listed.summary, listed.token_count, listed.meta) == (
        "report.pdf",
        "Two pages of text.",
        8,
        {"pages": 3},
    )
    store.remove_document(document.id)
    assert store.documents_for(conversation.id) == []
