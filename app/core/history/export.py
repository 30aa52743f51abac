"""The history's export format: conversations as JSON (what ``history import`` reads back, see ``imports``) or
Markdown. An export keeps each conversation's uuid, so importing the same file twice adds nothing the second time.

Format version 2 keeps the conversation's tree (see ``branches``): each message has an ``id`` (unique within its
conversation) and a ``parent`` (an earlier message's id, or null), and ``current_message`` is the newest message
of the branch on screen. Version 1 (a plain list, each message following the one before) still imports. The
Markdown export is the branch on screen. An export of a chosen version (``HistoryStore.export_data``'s
``version``) is the same with ``current_message`` the end of the branch the window shows for that version: the
path last viewed below it (see ``branches``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from app.core.history.records import (
    Conversation,
    Message,
    StoredDocument,
    iso_time,
    now_ms,
    printable_line,
    printable_text,
    to_ms,
)
from app.core.history.sources import ReplySource

EXPORT_FORMAT = "llamadesk-history"
EXPORT_VERSION = 2


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
    conversation: Conversation,
    messages: Sequence[Message],
    documents: Sequence[StoredDocument],
    sources: Mapping[int, Sequence[ReplySource]] | None = None,
    *,
    current_message: int | None = None,
) -> dict[str, Any]:
    """One conversation as plain data, ready for ``json.dumps``; ``sources`` are the passages each reply was
    given, by message id (see ``sources``); ``current_message`` the end of the branch to export as the one on
    screen (default: the conversation's own)."""
    sources = sources or {}
    return {
        "uuid": conversation.uuid,
        "title": conversation.title,
        "mode": conversation.mode,
        "model": conversation.model,
        "settings": conversation.settings,
        "created": iso_time(to_ms(conversation.created)),
        "updated": iso_time(to_ms(conversation.updated)),
        "current_message": current_message or _current_message(conversation, messages),
        "messages": [
            {
                "id": m.id,
                "parent": m.parent_id,
                "role": m.role,
                "content": m.content,
                "created": iso_time(to_ms(m.created)),
                "state": m.state,
                "prompt_tokens": m.prompt_tokens,
                "evaluated_tokens": m.evaluated_tokens,
                "generated_tokens": m.generated_tokens,
                "stats": m.stats,
                "sources": [source.to_dict() for source in sources.get(m.id, ())],
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


def _current_message(conversation: Conversation, messages: Sequence[Message]) -> int | None:
    if conversation.current_leaf_id is not None:
        return conversation.current_leaf_id
    return messages[-1].id if messages else None


def json_text(export: Mapping[str, Any]) -> str:
    """An export as the JSON text of an export file. JSON escapes the C0 controls (ESC, BEL) itself; the C1
    ones, which some terminals obey too, are escaped here (``\\u009b`` reads back as the same text)."""
    text = json.dumps(export, ensure_ascii=False, indent=2)
    return _C1_CONTROLS.sub(lambda match: f"\\u{ord(match.group()):04x}", text) + "\n"


_C1_CONTROLS = re.compile(r"[\x7f-\x9f]")
_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}
_STATE_NOTES = {
    "stopped": " (stopped)",
    "interrupted": " (interrupted)",
    "streaming": " (still being written)",
}


def _local(iso_text: str) -> str:
    return datetime.fromisoformat(iso_text).astimezone().strftime("%Y-%m-%d %H:%M")


SHOWN_ON_SCREEN = "the version on screen"


def conversation_markdown(conversation: Mapping[str, Any], shown: str = SHOWN_ON_SCREEN) -> str:
    """One exported conversation (an item of ``export_envelope(...)["conversations"]``) as Markdown: plain text
    that is safe to print to a terminal (control characters, such as a title's escape sequences, shown as
    symbols; the newlines and tabs of messages kept). ``shown`` names the branch printed, for a conversation
    with other versions."""
    title = printable_line(conversation["title"] or "New conversation")
    lines = [f"# {title}", ""]
    lines.append(f"- Mode: {printable_line(conversation['mode'])}")
    if conversation["model"]:
        lines.append(f"- Model: {printable_line(Path(conversation['model']).name)}")
    lines.append(f"- Started: {_local(conversation['created'])}")
    for document in conversation.get("documents", []):
        lines.append(f"- Attached: {printable_line(document['name'])}")
    branch = branch_on_screen(conversation)
    versions = len(conversation["messages"]) - len(branch)
    if versions:
        lines.append(f"- Shown: {shown}; {versions} message(s) of other versions are in the JSON export")
    for message in branch:
        heading = _ROLE_HEADINGS.get(message["role"], printable_line(message["role"]))
        note = _STATE_NOTES.get(message["state"], "")
        content = printable_text(message["content"].rstrip())
        lines += ["", f"## {heading} · {_local(message['created'])}{note}", "", content]
        lines += _sources_markdown(message.get("sources") or [])
    return "\n".join(lines)


def branch_on_screen(conversation: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The messages of an exported conversation's branch on screen, oldest first: every message of a version-1
    export (a plain list), otherwise the path from ``current_message`` up its parents."""
    messages: list[Mapping[str, Any]] = conversation["messages"]
    if not messages or "id" not in messages[0]:
        return list(messages)
    by_id = {message["id"]: message for message in messages}
    current = conversation.get("current_message")
    if current not in by_id:
        current = messages[-1]["id"]
    path: list[Mapping[str, Any]] = []
    seen: set[Any] = set()
    while current in by_id and current not in seen:
        seen.add(current)
        path.append(by_id[current])
        current = by_id[current].get("parent")
    return path[::-1]


SOURCE_QUOTE_CHARS = 160


def _sources_markdown(sources: Sequence[Mapping[str, Any]]) -> list[str]:
    """The passages a reply was given, under it: each one's document and page (or section) and how it begins."""
    if not sources:
        return []
    lines = ["", "Sources:"]
    for source in sources:
        quote = " ".join(str(source.get("text", "")).split())
        if len(quote) > SOURCE_QUOTE_CHARS:
            quote = quote[:SOURCE_QUOTE_CHARS].rsplit(" ", 1)[0] + "…"
        reference = printable_line(f"{source.get('document', '')}, {source.get('label', '')}")
        lines.append(f"- {reference}: “{printable_line(quote)}”")
    return lines


def markdown(conversations: Sequence[Mapping[str, Any]], shown: str = SHOWN_ON_SCREEN) -> str:
    """Exported conversations as one Markdown file, a rule between them."""
    return "\n\n---\n\n".join(conversation_markdown(c, shown) for c in conversations) + "\n"
