"""The history's export format: conversations as JSON (what ``history import`` reads back) or Markdown, and the
validation that turns an export into rows to insert, or into a sentence saying what is wrong with the file.

An export keeps each conversation's uuid, so importing the same file twice adds nothing the second time.
Exports from earlier versions still import: a document's ``page_starts`` is ignored, and a layout kept with
its text in ``meta["document"]`` becomes a text-free layout, as migration 0005 does in a database.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from app import APP_NAME
from app.core.documents.document import Document
from app.core.history.attachments import DocumentRow, insert_document
from app.core.history.errors import HistoryFormatError
from app.core.history.records import (
    MESSAGE_STATES,
    ROLES,
    Conversation,
    Message,
    StoredDocument,
    dump_json,
    dump_optional,
    int_or_none,
    iso_time,
    now_ms,
    one_line,
    row_id,
    to_ms,
    token_counts,
)
from app.core.history.schema import take_legacy_layout

EXPORT_FORMAT = "llamadesk-history"
EXPORT_VERSION = 1


# -- export ------------------------------------------------------------------------------------------------


def export_envelope(conversations: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole export: exported conversations (see ``conversation_export``) with the format's name and version."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported": iso_time(now_ms()),
        "conversations": conversations,
    }


def conversation_export(
    conversation: Conversation, messages: Sequence[Message], documents: Sequence[StoredDocument]
) -> dict[str, Any]:
    """One conversation as plain data, ready for ``json.dumps``."""
    return {
        "uuid": conversation.uuid,
        "title": conversation.title,
        "mode": conversation.mode,
        "model": conversation.model,
        "settings": conversation.settings,
        "created": iso_time(to_ms(conversation.created)),
        "updated": iso_time(to_ms(conversation.updated)),
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "created": iso_time(to_ms(m.created)),
                "state": m.state,
                "prompt_tokens": m.prompt_tokens,
                "evaluated_tokens": m.evaluated_tokens,
                "generated_tokens": m.generated_tokens,
                "stats": m.stats,
            }
            for m in messages
        ],
        "documents": [
            {
                "name": d.name,
                "content_hash": d.content_hash,
                "text": d.text,
                "layout": d.layout,
                "token_count": d.token_count,
                "summary": d.summary,
                "meta": d.meta,
                "created": iso_time(to_ms(d.created)),
            }
            for d in documents
        ],
    }


def json_text(export: Mapping[str, Any]) -> str:
    """An export as the JSON text of an export file."""
    return json.dumps(export, ensure_ascii=False, indent=2) + "\n"


_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}
_STATE_NOTES = {
    "stopped": " (stopped)",
    "interrupted": " (interrupted)",
    "streaming": " (still being written)",
}


def _local(iso_text: str) -> str:
    return datetime.fromisoformat(iso_text).astimezone().strftime("%Y-%m-%d %H:%M")


def conversation_markdown(conversation: Mapping[str, Any]) -> str:
    """One exported conversation (an item of ``export_envelope(...)["conversations"]``) as Markdown."""
    title = conversation["title"] or "New conversation"
    lines = [f"# {title}", ""]
    lines.append(f"- Mode: {conversation['mode']}")
    if conversation["model"]:
        lines.append(f"- Model: {Path(conversation['model']).name}")
    lines.append(f"- Started: {_local(conversation['created'])}")
    for document in conversation.get("documents", []):
        lines.append(f"- Attached: {document['name']}")
    for message in conversation["messages"]:
        heading = _ROLE_HEADINGS.get(message["role"], message["role"])
        note = _STATE_NOTES.get(message["state"], "")
        lines += ["", f"## {heading} · {_local(message['created'])}{note}", "", message["content"].rstrip()]
    return "\n".join(lines)


def markdown(conversations: Sequence[Mapping[str, Any]]) -> str:
    """Exported conversations as one Markdown file, a rule between them."""
    return "\n\n---\n\n".join(conversation_markdown(c) for c in conversations) + "\n"


# -- import ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedConversation:
    """One exported conversation, checked and converted to column values."""

    uuid: str
    title: str
    mode: str
    model: str
    settings: str  # JSON
    created_ms: int
    updated_ms: int
    # (role, content, created_ms, state, prompt_tokens, evaluated_tokens, generated_tokens, stats JSON)
    messages: list[tuple[Any, ...]]
    documents: list[DocumentRow]


def insert_imported(connection: sqlite3.Connection, item: ImportedConversation) -> int:
    """Insert a conversation of an export, with its messages and documents, into an open transaction."""
    cursor = connection.execute(
        "INSERT INTO conversations (uuid, title, mode, model, settings, created_ms, updated_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (item.uuid, item.title, item.mode, item.model, item.settings, item.created_ms, item.updated_ms),
    )
    conversation_id = row_id(cursor)
    connection.executemany(
        "INSERT INTO messages (conversation_id, role, content, created_ms, state, prompt_tokens, "
        "evaluated_tokens, generated_tokens, stats) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(conversation_id, *message) for message in item.messages],
    )
    for document in item.documents:
        insert_document(connection, conversation_id, document)
    return conversation_id


def parse_export_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryFormatError(
            f"{source} is not a {APP_NAME} history export (it is not valid JSON: {exc.msg}, line {exc.lineno}). "
            "Export one with: llamadesk history export --format json"
        ) from exc


def validated_export(data: Any, source: str) -> list[dict[str, Any]]:
    """The conversations of an export, each with a uuid; HistoryFormatError when ``data`` is not an export."""
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise HistoryFormatError(
            f"{source} is not a {APP_NAME} history export. Export one with: llamadesk history export --format json"
        )
    version = data.get("version")
    if not isinstance(version, int) or version > EXPORT_VERSION:
        raise HistoryFormatError(
            f"{source} was exported by a newer version of {APP_NAME} (format {version}). Update {APP_NAME} to "
            "import it."
        )
    conversations = data.get("conversations")
    if not isinstance(conversations, list) or not all(
        isinstance(c, dict) and isinstance(c.get("uuid"), str) and c["uuid"] for c in conversations
    ):
        raise HistoryFormatError(
            f"{source} is damaged: its conversations are missing or have no id. Export the history again."
        )
    return conversations


def parse_conversation(item: Mapping[str, Any], source: str) -> ImportedConversation:
    """One item of ``validated_export`` as column values; HistoryFormatError for a missing or invalid field."""
    try:
        return ImportedConversation(
            uuid=item["uuid"],
            title=one_line(str(item.get("title", ""))),
            mode=str(item.get("mode", "chat")),
            model=str(item.get("model", "")),
            settings=dump_json(dict(item.get("settings") or {})),
            created_ms=_parse_time(item["created"]),
            updated_ms=_parse_time(item["updated"]),
            messages=[_parse_message(m) for m in item.get("messages", [])],
            documents=[_parse_document(d) for d in item.get("documents", [])],
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise HistoryFormatError(
            f"{source} has a conversation ({item.get('title') or item.get('uuid')!s}) with a missing or invalid "
            f"field ({exc}); nothing was imported. Export the history again and import that file."
        ) from exc


def _parse_message(m: Mapping[str, Any]) -> tuple[Any, ...]:
    state = m.get("state", "complete")
    # A reply that was streaming when exported can no longer finish.
    state = "interrupted" if state == "streaming" else state
    if m["role"] not in ROLES or state not in MESSAGE_STATES:
        raise KeyError("role" if m["role"] not in ROLES else "state")
    return (
        m["role"],
        str(m["content"]),
        _parse_time(m["created"]),
        state,
        *token_counts(m),  # the export keeps them beside the stats, under the same names
        dump_optional(m.get("stats")),
    )


def _parse_document(d: Mapping[str, Any]) -> DocumentRow:
    text = str(d.get("text", ""))
    meta = dict(d.get("meta") or {})
    layout = d.get("layout")
    if layout is not None:
        if not isinstance(layout, dict):
            raise ValueError("a document's layout must be an object")
        Document.from_stored(text, layout)  # raises when the layout does not fit the text
    else:
        layout = take_legacy_layout(meta, text)
    summary = d.get("summary")
    return DocumentRow(
        name=str(d["name"]),
        content_hash=str(d["content_hash"]),
        text=text,
        layout=layout,
        token_count=int_or_none(d.get("token_count")),
        summary=summary if isinstance(summary, str) else None,
        meta=meta,
        created_ms=_parse_time(d["created"]),
    )


def _parse_time(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError(f"a time must be ISO 8601 text, not {value!r}")
    return to_ms(datetime.fromisoformat(value))
