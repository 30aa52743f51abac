"""Attached documents: the text stored once, the layout beside it, and the same Document back after reopening."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3

import pytest

from app.core.history.store import HistoryStore
from tests.helpers.history import on_disk, paged_document, text_document


def test_a_document_comes_back_equal_after_reopening(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    document = paged_document()
    pasted = text_document("notes.txt", "Otters hold hands while they sleep.")
    store.add_document(conversation.id, document, summary="Three pages.")
    store.add_document(conversation.id, pasted)
    store.close()

    reopened = HistoryStore()
    attached = reopened.attached_documents(conversation.id)
    assert [restored for _stored, restored in attached] == [document, pasted]
    assert attached[0][1].content_hash == document.content_hash
    assert [stored.summary for stored, _restored in attached] == ["Three pages.", None]


def test_the_text_is_stored_once(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    document = paged_document()
    store.add_document(conversation.id, document, meta={"source": "drop"})
    [(text, layout, meta)] = on_disk(store.path, "SELECT text, layout, meta FROM documents")
    assert text == document.text
    assert isinstance(layout, str) and isinstance(meta, str)
    for section in document.sections:
        if section.text:
            assert section.text not in layout and section.text not in meta
    assert json.loads(layout) == document.to_dict()
    assert json.loads(meta) == {"source": "drop"}
    columns = [row[1] for row in on_disk(store.path, "PRAGMA table_info(documents)")]
    assert "page_starts" not in columns


def test_a_layout_that_does_not_fit_its_text_is_left_out(
    store: HistoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    conversation = store.create_conversation()
    kept = store.add_document(conversation.id, text_document("kept.txt", "Still here."))
    broken = store.add_document(conversation.id, paged_document())
    with contextlib.closing(sqlite3.connect(store.path)) as connection, connection:
        connection.execute("UPDATE documents SET text = 'short' WHERE id = ?", (broken.id,))
    with caplog.at_level(logging.WARNING):
        attached = store.attached_documents(conversation.id)
    assert [stored.id for stored, _restored in attached] == [kept.id]
    assert f"document {broken.id} could not be restored" in caplog.text
    assert [stored.id for stored in store.documents_for(conversation.id)] == [kept.id, broken.id]
