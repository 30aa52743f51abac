"""Migrations: an older history is backed up, then migrated with all its data."""

from __future__ import annotations

import json
import stat

from app.core.documents.document import Document, Section
from app.core.history.schema import MIGRATIONS, legacy_document_layout
from app.core.history.store import HistoryStore
from app.core.paths import app_paths
from tests.fixtures.history_v1 import V1_CONVERSATIONS, V1_MESSAGES, V1_MIGRATION, build_v1_database
from tests.fixtures.history_v4 import (
    CONVERSATION_ID,
    ODD_DOCUMENT,
    ODD_TEXT,
    PDF_HASH,
    PDF_SECTIONS,
    PDF_TEXT,
    PLAIN_TEXT,
    build_v4_database,
)
from tests.helpers.history import dump, on_disk, paged_document, text_document

ALL_MIGRATIONS = [migration.name for migration in MIGRATIONS]


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
    store.add_document(1, text_document("map.png.txt", "A map."))
    store.close()

    again = HistoryStore()
    assert again.backup_path is None  # nothing left to migrate: no second copy
    assert len(list(path.parent.glob("history.sqlite3.bak-*"))) == 1


def test_version_4_documents_keep_their_text_once_after_migrating() -> None:
    path = app_paths().history_db
    path.parent.mkdir(parents=True)
    build_v4_database(path)
    original = dump(path)

    store = HistoryStore()
    backup = store.backup_path
    assert backup is not None and backup.name.startswith("history.sqlite3.bak-v4-")
    assert dump(backup) == original
    assert store.applied_migrations() == ALL_MIGRATIONS
    columns = [row[1] for row in on_disk(path, "PRAGMA table_info(documents)")]
    assert "page_starts" not in columns and "layout" in columns

    harbour = Document(
        name="harbour.pdf",
        path="/docs/harbour.pdf",
        kind="pdf",
        sections=[Section(s["label"], s["text"], s["page"]) for s in PDF_SECTIONS],
        text=PDF_TEXT,
        content_hash=PDF_HASH,
        size=5120,
    )
    # As version 4 read it back: the text joined from the sections, whatever the text column held.
    odd = Document("odd.txt", "/docs/odd.txt", "text", [Section("lines 1-2", "Line one.\nLine two.")],
                   "Line one.\nLine two.", "odd-hash", 19)  # fmt: skip
    attached = store.attached_documents(CONVERSATION_ID)
    assert [(stored.id, document) for stored, document in attached] == [(1, harbour), (2, odd)]

    pdf_row, odd_row, plain_row = store.documents_for(CONVERSATION_ID)
    assert (pdf_row.text, pdf_row.summary, pdf_row.token_count) == (PDF_TEXT, "A harbour town.", 30)
    assert pdf_row.meta == {"source": "drop"}  # the document left meta; what else it held stayed
    assert pdf_row.layout == harbour.to_dict()
    assert all(s["text"] not in json.dumps(pdf_row.layout) for s in PDF_SECTIONS if s["text"])
    assert (odd_row.text, odd_row.layout, odd_row.meta) == (ODD_TEXT, None, {"document": ODD_DOCUMENT})
    assert (plain_row.text, plain_row.layout, plain_row.meta) == (PLAIN_TEXT, None, {"pages": 2})

    assert store.integrity_check() == ["ok"]
    assert on_disk(path, "PRAGMA foreign_key_check") == []
    store.delete_conversation(CONVERSATION_ID)
    store.purge_trash()
    assert on_disk(path, "SELECT count(*) FROM documents") == [(0,)]  # still cascades from its conversation


def test_the_layout_migration_0005_writes_is_the_documents_own() -> None:
    document = paged_document()
    as_version_4_kept_it = {
        **document.to_dict(),
        "sections": [{"label": s.label, "text": s.text, "page": s.page} for s in document.sections],
    }
    assert legacy_document_layout(as_version_4_kept_it) == (document.text, document.to_dict())
