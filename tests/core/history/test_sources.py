"""The sources of a reply in the real history database: stored, read back in order, gone with their reply,
migrated into an older file, and in the JSON and Markdown exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.history.export import markdown
from app.core.history.sources import ReplySource
from app.core.history.store import HistoryStore
from app.core.paths import app_paths
from tests.fixtures.history_v5 import build_v5_database

SOURCES = [
    ReplySource("harbour.pdf", "page 3", 3, "Total revenue for the year was 4.8 million euros."),
    ReplySource("harbour.pdf", "page 1", 1, "This report describes the year of the Northport harbour."),
    ReplySource("notes.docx", 'section "Outlook"', None, "The board plans to extend the north quay."),
]


def _reply(store: HistoryStore) -> tuple[int, int]:
    conversation = store.create_conversation(mode="chat")
    store.add_message(conversation.id, "user", "What was the revenue?")
    reply = store.add_message(conversation.id, "assistant", "It was 4.8 million euros.")
    return conversation.id, reply.id


def test_sources_are_kept_with_their_reply_in_order(store: HistoryStore) -> None:
    _conversation, reply = _reply(store)
    store.set_reply_sources(reply, SOURCES)
    assert store.reply_sources([reply]) == {reply: SOURCES}
    assert store.reply_sources([reply + 100]) == {}
    store.set_reply_sources(reply, SOURCES[:1])  # replaced, not added to
    assert store.reply_sources([reply, reply]) == {reply: SOURCES[:1]}


def test_sources_go_with_their_reply(store: HistoryStore) -> None:
    _conversation, reply = _reply(store)
    store.set_reply_sources(reply, SOURCES)
    store.delete_message(reply)
    rows = store._connection.execute("SELECT count(*) FROM reply_sources").fetchone()[0]
    assert rows == 0


def test_an_older_history_gains_the_sources_table(tmp_path: Path) -> None:
    path = app_paths().history_db
    path.parent.mkdir(parents=True, exist_ok=True)
    build_v5_database(path)
    with HistoryStore() as store:
        assert "0007_reply_sources" in store.applied_migrations()
        assert store.applied_migrations() == sorted(store.applied_migrations())
        reply = next(
            m for c in store.list_conversations() for m in store.messages(c.id) if m.role == "assistant"
        )
        assert store.reply_sources([reply.id]) == {}
        store.set_reply_sources(reply.id, SOURCES[:2])
        assert store.reply_sources([reply.id])[reply.id] == SOURCES[:2]


def test_exports_list_the_sources_under_their_reply(store: HistoryStore) -> None:
    conversation, reply = _reply(store)
    store.set_reply_sources(reply, SOURCES)
    exported = json.loads(store.export_json([conversation]))
    messages = exported["conversations"][0]["messages"]
    assert messages[0]["sources"] == []
    assert [ReplySource.from_dict(s) for s in messages[1]["sources"]] == SOURCES
    text = store.export_markdown([conversation])
    answer_at = text.index("It was 4.8 million euros.")
    assert text.index("Sources:") > answer_at
    assert "- harbour.pdf, page 3: “Total revenue for the year was 4.8 million euros.”" in text
    assert '- notes.docx, section "Outlook": ' in text
    print(text[answer_at:])


def test_a_long_passage_is_shortened_in_markdown() -> None:
    long_text = "word " * 200
    conversation = {
        "title": "t",
        "mode": "chat",
        "model": "",
        "created": "2026-01-01T00:00:00+00:00",
        "messages": [
            {
                "role": "assistant",
                "content": "An answer.",
                "created": "2026-01-01T00:00:00+00:00",
                "state": "complete",
                "sources": [ReplySource("a.txt", "lines 1-40", None, long_text).to_dict()],
            }
        ],
    }
    line = next(line for line in markdown([conversation]).splitlines() if line.startswith("- a.txt"))
    assert line.endswith("…”") and len(line) < 200


def test_a_source_from_foreign_data_is_checked() -> None:
    with pytest.raises(TypeError):
        ReplySource.from_dict({"document": "a", "label": "page 1", "page": "one", "text": "x"})
    with pytest.raises(KeyError):
        ReplySource.from_dict({"document": "a", "page": 1, "text": "x"})


def test_an_export_imported_again_keeps_each_replys_sources(store: HistoryStore, tmp_path: Path) -> None:
    _conversation, reply = _reply(store)
    store.set_reply_sources(reply, SOURCES)
    exported = store.export_json()
    data = json.loads(exported)
    with HistoryStore(tmp_path / "other.sqlite3") as other:
        result = other.import_json(exported)
        assert result.imported and not result.refused
        (imported_reply,) = [m for m in other.messages(result.imported[0]) if m.role == "assistant"]
        assert other.reply_sources([imported_reply.id]) == {imported_reply.id: SOURCES}
        # A source that is not a passage refuses its conversation with a sentence, naming the message.
        data["conversations"][0]["uuid"] = "another"
        data["conversations"][0]["messages"][1]["sources"] = [{"document": "a.pdf", "label": 3}]
        refused = other.import_json(json.dumps(data))
        assert not refused.imported
        assert "message 2: source 1 is not a passage" in refused.refused[0]
