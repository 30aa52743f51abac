"""Documents attached to a conversation: the row that stores one (its text once, its text-free layout beside
it) and the ``Document`` rebuilt from a stored one."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.core.documents.document import Document
from app.core.history.records import StoredDocument, dump_json, dump_optional, now_ms, row_id
from app.core.history.schema import legacy_document_layout


@dataclass(frozen=True)
class DocumentRow:
    """The column values of one attached document, before it has an id."""

    name: str
    content_hash: str
    text: str
    layout: dict[str, Any] | None  # ``Document.to_dict()``: where each section lies in ``text``
    token_count: int | None
    summary: str | None
    meta: dict[str, Any]
    created_ms: int

    @classmethod
    def of(
        cls,
        document: Document,
        *,
        token_count: int | None = None,
        summary: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> DocumentRow:
        return cls(
            name=document.name,
            content_hash=document.content_hash,
            text=document.text,
            layout=document.to_dict(),
            token_count=token_count,
            summary=summary,
            meta=dict(meta or {}),
            created_ms=now_ms(),
        )


def insert_document(connection: sqlite3.Connection, conversation_id: int, row: DocumentRow) -> int:
    """Insert ``row`` into an open transaction; returns the document's id."""
    cursor = connection.execute(
        "INSERT INTO documents (conversation_id, name, content_hash, text, layout, token_count, summary, meta, "
        "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            conversation_id,
            row.name,
            row.content_hash,
            row.text,
            dump_optional(row.layout),
            row.token_count,
            row.summary,
            dump_json(row.meta),
            row.created_ms,
        ),
    )
    return row_id(cursor)


def rebuilt_document(stored: StoredDocument) -> Document | None:
    """The ``Document`` that was stored; None for one stored without a layout (there is nothing to rebuild).
    Raises KeyError, TypeError or ValueError for a layout that does not fit the text."""
    if stored.layout is not None:
        return Document.from_stored(stored.text, stored.layout)
    # Kept with its sections' texts by a version before migration 0005 (which left it so because its sections
    # did not add up to its text column): read from the sections, as those versions did.
    legacy = stored.meta.get("document")
    converted = legacy_document_layout(legacy) if isinstance(legacy, dict) else None
    return None if converted is None else Document.from_stored(*converted)
