"""Export to JSON and Markdown, and import with validation: a round trip loses nothing, a bad file adds nothing,
and a bad conversation is refused with a sentence while the good ones are imported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.core.history.errors import HistoryFormatError
from app.core.history.store import HistoryStore
from tests.fixtures.history_v4 import PDF_DOCUMENT, PDF_HASH, PDF_SECTIONS, PDF_TEXT
from tests.helpers.history import paged_document


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
    store.add_document(chat.id, paged_document("poem.pdf"), summary="A poem.")
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
    assert "- Attached: poem.pdf" in markdown
    assert "# Hello world" in markdown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "something-else"}', "not a LlamaDesk history export"),
        ('{"format": "llamadesk-history", "version": 99, "conversations": []}', "newer version"),
        ('{"format": "llamadesk-history", "version": 1, "conversations": {"title": "x"}}', "damaged"),
    ],
)
def test_import_rejects_what_is_not_an_export(store: HistoryStore, text: str, message: str) -> None:
    with pytest.raises(HistoryFormatError, match=message):
        store.import_json(text, "export.json")


def test_import_refuses_one_bad_conversation_and_imports_the_others(
    store: HistoryStore, tmp_path: Path
) -> None:
    fill_for_export(store)
    data = store.export_data()
    data["conversations"][1]["messages"][0]["role"] = "wizard"
    data["conversations"].append({"title": "no id"})
    other = HistoryStore(tmp_path / "other" / "history.sqlite3")
    result = other.import_data(data)
    assert len(result.imported) == 1 and other.count_conversations() == 1
    assert result.refused == [
        "Conversation 2 ('Hello world') was not imported: message 1: its role is 'wizard', not one of system, "
        "user, assistant.",
        "Conversation 3 ('no id') was not imported: it has no uuid.",
    ]


def version_4_export() -> dict[str, Any]:
    """An export as version 4 wrote it: the document's text again in meta, and page_starts."""
    created = "2023-11-14T22:13:20.000+00:00"
    document = {
        "name": "harbour.pdf",
        "content_hash": PDF_HASH,
        "text": PDF_TEXT,
        "page_starts": [0, 43],
        "token_count": 30,
        "summary": "A harbour town.",
        "meta": {"document": PDF_DOCUMENT},
        "created": created,
    }
    conversation = {"uuid": "v4-harbour", "title": "Harbour", "mode": "summarize", "model": "", "settings": {},
                    "created": created, "updated": created, "messages": [], "documents": [document]}  # fmt: skip
    return {"format": "llamadesk-history", "version": 1, "conversations": [conversation]}


def test_an_export_from_version_4_imports_with_its_documents(store: HistoryStore) -> None:
    result = store.import_data(version_4_export())
    [(stored, document)] = store.attached_documents(result.imported[0])
    assert document.text == PDF_TEXT and document.content_hash == PDF_HASH
    assert [(s.label, s.text, s.page) for s in document.sections] == [
        (s["label"], s["text"], s["page"]) for s in PDF_SECTIONS
    ]
    assert (stored.meta, stored.layout, stored.summary) == ({}, document.to_dict(), "A harbour town.")
    [exported] = store.export_data()["conversations"][0]["documents"]
    assert "page_starts" not in exported and exported["layout"] == document.to_dict()


def test_import_refuses_a_layout_that_does_not_fit_its_text(store: HistoryStore) -> None:
    data = version_4_export()
    [document] = data["conversations"][0]["documents"]
    document["layout"] = {
        **paged_document().to_dict(),
        "sections": [{"label": "page 1", "start": 0, "end": 9999}],
    }
    result = store.import_data(data)
    assert store.count_conversations() == 0
    [refused] = result.refused
    assert refused.startswith("Conversation 1 ('Harbour') was not imported: attached document 1: its layout")
