"""The sources of a reply in the real history database: stored, read back in order with their question and file,
gone with their reply, migrated into an older file, and in the JSON and Markdown exports; grouped by page, and
opened at their page only when their file is there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.documents.reader import read_document
from app.core.history.export import markdown
from app.core.history.sources import ReplySource, group_sources, open_plan
from app.core.history.store import HistoryStore
from app.core.paths import app_paths
from tests.fixtures.documents import REPORT_PAGES, build_pdf
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


def test_sources_read_back_know_their_question_and_file(store: HistoryStore, tmp_path: Path) -> None:
    pdf = build_pdf(tmp_path / "harbour.pdf", REPORT_PAGES)
    conversation, reply = _reply(store)
    store.add_document(conversation, read_document(pdf))
    store.set_reply_sources(reply, SOURCES)
    (read,) = store.reply_sources([reply]).values()
    assert [s.question for s in read] == ["What was the revenue?"] * 3
    assert [s.path for s in read] == [str(pdf), str(pdf), ""]  # notes.docx is not attached
    # A layout that is not JSON (a damaged row) costs the path, not the sources.
    store._connection.execute("UPDATE documents SET layout = '{broken'")
    (damaged,) = store.reply_sources([reply]).values()
    assert damaged == SOURCES and damaged[0].path == "" and damaged[0].question == "What was the revenue?"


def test_a_library_source_keeps_its_path_without_an_attached_document(store: HistoryStore) -> None:
    """A library's file was never attached to the conversation: its path is kept with the source."""
    _conversation, reply = _reply(store)
    library_source = ReplySource(
        "boiler.md", 'section "Boiler"', None, "Read 1.5 bar.", path="/notes/boiler.md"
    )
    store.set_reply_sources(reply, [library_source, SOURCES[2]])
    (read,) = store.reply_sources([reply]).values()
    assert [s.path for s in read] == ["/notes/boiler.md", ""]


def test_the_passages_of_one_page_are_one_source_in_the_order_given() -> None:
    passages = [
        ReplySource("harbour.pdf", "page 3", 3, "Total revenue was 4.8 million euros.", path="/h.pdf"),
        ReplySource("notes.docx", 'section "Outlook"', None, "The board plans to extend the quay."),
        ReplySource("harbour.pdf", "page 3", 3, "Most of it came from mooring fees.", path="/h.pdf"),
        ReplySource("harbour.pdf", "page 1", 1, "This report describes the year.", path="/h.pdf"),
    ]
    groups = group_sources(passages)
    assert [g.reference for g in groups] == [
        "harbour.pdf, page 3",
        'notes.docx, section "Outlook"',
        "harbour.pdf, page 1",
    ]
    assert groups[0].passages == (passages[0], passages[2]) and groups[0].page == 3
    assert groups[0].path == "/h.pdf" and groups[1].path == ""


def test_a_source_opens_its_file_at_its_page_only_when_the_file_is_there(tmp_path: Path) -> None:
    pdf = build_pdf(tmp_path / "harbour.pdf", REPORT_PAGES)
    passage = ReplySource("harbour.pdf", "page 3", 3, "Total revenue was 4.8 million euros.", path=str(pdf))
    (group,) = group_sources([passage])
    plan = open_plan(group)
    assert plan.problem is None and plan.path == str(pdf) and plan.page == 3 and not plan.folder
    assert "page 3" in plan.description
    moved = tmp_path / "elsewhere.pdf"
    pdf.rename(moved)
    gone = open_plan(group)
    assert gone.problem is not None and str(pdf) in gone.problem and "moved" in gone.problem
    # A program's source is never handed to the system to open (that could run it): its folder is.
    script = tmp_path / "deploy.bat"
    script.write_text("echo hello\n")
    (code,) = group_sources([ReplySource("deploy.bat", "lines 1-1", None, "echo hello", path=str(script))])
    folder = open_plan(code)
    assert folder.problem is None and folder.folder and folder.path == str(tmp_path) and folder.page is None
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n")
    (markdown_group,) = group_sources([ReplySource("notes.md", "section", None, "Notes", path=str(notes))])
    plain = open_plan(markdown_group)
    assert plain.problem is None and plain.path == str(notes) and plain.page is None and not plain.folder
    (pasted,) = group_sources([ReplySource("pasted text", "lines 1-3", None, "Notes")])
    assert open_plan(pasted).problem is not None
