"""Reading an export back (``history import``): each conversation checked (types, ranges, sizes) and turned into
rows to insert, or refused with a sentence saying what is wrong with it, while the good ones are imported.

A value of the wrong type is refused, never stored as its Python repr; a time outside 1970-2200, a number
SQLite cannot hold, a nesting deeper than ``MAX_NESTING`` or a text over its size limit is refused too, so that
an imported conversation can always be listed, shown, exported and opened again.

Exports from earlier versions still import: a document's ``page_starts`` is ignored, and a layout kept with
its text in ``meta["document"]`` becomes a text-free layout, as migration 0005 does in a database. A version-1
conversation (a plain list of messages) becomes a single branch; a version-2 one keeps its tree, each parent
checked to be a message of the same conversation and no message its own ancestor.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from app import APP_NAME
from app.core.documents.document import Document
from app.core.history.attachments import DocumentRow, insert_document
from app.core.history.errors import HistoryFormatError
from app.core.history.export import EXPORT_FORMAT, EXPORT_VERSION
from app.core.history.records import (
    EARLIEST_MS,
    LATEST_MS,
    MESSAGE_STATES,
    MODES,
    ROLES,
    ImportResult,
    dump_json,
    dump_optional,
    iso_time,
    one_line,
    printable_line,
    row_id,
    to_ms,
)
from app.core.history.schema import take_legacy_layout
from app.core.history.sources import ReplySource, insert_sources

# Limits of what one conversation of an import may hold. Generous for anything the app itself exports (a
# document's text is capped far lower when it is attached), tight enough that one file cannot exhaust memory or
# make a row the list and the window cannot show.
MAX_IMPORT_CHARACTERS = 512 * 1024 * 1024  # the whole file
MAX_TITLE_CHARACTERS = 10_000
MAX_SHORT_TEXT_CHARACTERS = 4_096  # a uuid, a model path, a document's name or hash
MAX_MESSAGE_CHARACTERS = 16 * 1024 * 1024
MAX_DOCUMENT_CHARACTERS = 64 * 1024 * 1024
MAX_MESSAGES = 1_000_000
MAX_DOCUMENTS = 1_000
MAX_SOURCES = 1_000  # passages under one reply
MAX_NESTING = 32  # settings, stats, meta and layout: objects within objects
MAX_OBJECT_CHARACTERS = 16 * 1024 * 1024  # one of those as JSON text
MAX_TOKEN_COUNT = 2**31 - 1
_SQLITE_INTEGER = 2**63 - 1


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
    # Each message's parent as an index into ``messages`` (always an earlier one); empty: each follows the one
    # before it. ``current``: the index of the newest message of the branch on screen (None: the last).
    parents: list[int | None] = field(default_factory=list)
    current: int | None = None
    # The passages each message was answered from (see ``history.sources``), by index into ``messages``.
    sources: dict[int, list[ReplySource]] = field(default_factory=dict)


class _Invalid(ValueError):
    """What is wrong with one field of a conversation, as words for the sentence."""


def insert_imported(connection: sqlite3.Connection, item: ImportedConversation) -> int:
    """Insert a conversation of an export, with its messages and documents, into an open transaction."""
    cursor = connection.execute(
        "INSERT INTO conversations (uuid, title, mode, model, settings, created_ms, updated_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (item.uuid, item.title, item.mode, item.model, item.settings, item.created_ms, item.updated_ms),
    )
    conversation_id = row_id(cursor)
    # The ids are chosen here (the transaction holds the write lock), so that each message can name its
    # parent's id and all of them go in with one executemany.
    first = connection.execute("SELECT coalesce(max(id), 0) + 1 FROM messages").fetchone()[0]
    parents = item.parents or [index - 1 if index else None for index in range(len(item.messages))]
    connection.executemany(
        "INSERT INTO messages (id, conversation_id, role, content, created_ms, state, prompt_tokens, "
        "evaluated_tokens, generated_tokens, stats, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (first + index, conversation_id, *message, None if parent is None else first + parent)
            for index, (message, parent) in enumerate(zip(item.messages, parents, strict=True))
        ],
    )
    if item.messages:
        current = item.current if item.current is not None else len(item.messages) - 1
        connection.execute(
            "UPDATE conversations SET current_leaf_id = ? WHERE id = ?", (first + current, conversation_id)
        )
    for index, passages in item.sources.items():
        insert_sources(connection, first + index, passages)
    for document in item.documents:
        insert_document(connection, conversation_id, document)
    return conversation_id


MARKDOWN_SUFFIXES = (".md", ".markdown")


def read_export_file(path: Path) -> str:
    """The text of a file to import; HistoryFormatError with the sentence when it cannot be an export: missing,
    unreadable, too large, not text, or a Markdown export (written for reading: it keeps neither the versions of
    replies nor who wrote them, so it cannot be imported)."""
    if path.suffix.lower() in MARKDOWN_SUFFIXES:
        raise HistoryFormatError(_MARKDOWN_REFUSED.format(name=path.name))
    try:
        if path.stat().st_size > MAX_IMPORT_CHARACTERS * 4:  # checked again by characters once read
            raise HistoryFormatError(
                f"{path.name} is too large to import (at most {MAX_IMPORT_CHARACTERS // 2**20:,} MB). Export "
                "fewer conversations at a time and import each file."
            )
        # "utf-8-sig": a byte order mark, as some editors save one, is no error.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise HistoryFormatError(f"There is no file {path}. Check the name and try again.") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "it is not text"
        raise HistoryFormatError(
            f"{path.name} could not be read ({reason}). Choose a JSON file made by Export as JSON."
        ) from exc
    if text.lstrip().startswith("# "):  # the first line of a Markdown export, whatever the file is called
        raise HistoryFormatError(_MARKDOWN_REFUSED.format(name=path.name))
    return text


_MARKDOWN_REFUSED = (
    "{name} is a Markdown export, which is for reading: it does not keep what an import needs. Import the JSON "
    "export of the same conversations instead (Export as JSON…, or: llamadesk history export --format json)."
)


def import_outcome(result: ImportResult, source: str) -> str:
    """What an import of ``source`` did, in a sentence or two: how many conversations were added, skipped as
    already there, and refused (the first refusal's own sentence, so the person knows what to fix)."""
    added = len(result.imported)
    parts = [f"Imported {added} conversation{'s' if added != 1 else ''} from {source}"]
    if result.skipped:
        were = "was" if result.skipped == 1 else "were"
        parts.append(f"{result.skipped} {were} already in the history and skipped")
    if not result.refused:
        return "; ".join(parts) + "."
    refused = len(result.refused)
    parts.append(f"{refused} {'was' if refused == 1 else 'were'} refused")
    rest = f" ({refused - 1} more in the log)" if refused > 1 else ""
    return "; ".join(parts) + f". {printable_line(result.refused[0])}{rest}"


def parse_export_json(text: str, source: str) -> Any:
    if len(text) > MAX_IMPORT_CHARACTERS:
        raise HistoryFormatError(
            f"{source} is too large to import ({len(text) // 2**20:,} MB; at most "
            f"{MAX_IMPORT_CHARACTERS // 2**20:,} MB). Export fewer conversations at a time and import each file."
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryFormatError(
            f"{source} is not a {APP_NAME} history export (it is not valid JSON: {exc.msg}, line {exc.lineno}). "
            "Export one with: llamadesk history export --format json"
        ) from exc
    except (RecursionError, ValueError) as exc:  # nesting too deep; a number of over 4,300 digits
        reason = "its values are nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise HistoryFormatError(
            f"{source} cannot be imported: {reason}. A {APP_NAME} export never looks like this; export the "
            "history again and import that file."
        ) from exc


def validated_export(data: Any, source: str) -> list[Any]:
    """The conversations of an export (each still to be checked by ``parse_conversation``); HistoryFormatError
    when ``data`` is not an export at all."""
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise HistoryFormatError(
            f"{source} is not a {APP_NAME} history export. Export one with: llamadesk history export --format json"
        )
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > EXPORT_VERSION:
        shown = version if isinstance(version, int) and version < 10**6 else "unknown"
        raise HistoryFormatError(
            f"{source} was exported by a newer version of {APP_NAME} (format {shown}). Update {APP_NAME} to "
            "import it."
        )
    conversations = data.get("conversations")
    if not isinstance(conversations, list):
        raise HistoryFormatError(
            f"{source} is damaged: it has no list of conversations. Export the history again."
        )
    return conversations


def parse_conversation(item: Any, number: int) -> ImportedConversation:
    """Conversation ``number`` (from 1) of ``validated_export`` as column values; HistoryFormatError with the
    sentence that refuses it."""
    name = f"conversation {number}"
    try:
        if not isinstance(item, dict):
            raise _Invalid(f"it is {_kind(item)}, not an object")
        title = _text(item, "title", MAX_TITLE_CHARACTERS, default="")
        if title:
            name += f" ({printable_line(title)[:60]!r})"
        mode = _text(item, "mode", MAX_SHORT_TEXT_CHARACTERS, default="chat")
        if mode not in MODES:
            raise _Invalid(f"its mode is {printable_line(mode)[:40]!r}, not one of {', '.join(MODES)}")
        uuid = _text(item, "uuid", MAX_SHORT_TEXT_CHARACTERS)
        if not uuid.strip():
            raise _Invalid("its id (uuid) is empty")
        messages = _list(item, "messages", MAX_MESSAGES)
        documents = _list(item, "documents", MAX_DOCUMENTS)
        order, parents, current = _tree(item, messages)
        return ImportedConversation(
            uuid=uuid,
            title=one_line(title),
            mode=mode,
            model=_text(item, "model", MAX_SHORT_TEXT_CHARACTERS, default=""),
            settings=dump_json(_object(item, "settings", default={})),
            created_ms=_time(item, "created"),
            updated_ms=_time(item, "updated"),
            messages=[_message(messages[index], index + 1) for index in order],
            sources={
                position: passages
                for position, index in enumerate(order)
                if (passages := _sources(messages[index], index + 1))
            },
            documents=[_document(d, index) for index, d in enumerate(documents, start=1)],
            parents=parents,
            current=current,
        )
    except _Invalid as exc:
        raise HistoryFormatError(f"C{name[1:]} was not imported: {exc}.") from exc


def _tree(item: Mapping[str, Any], messages: list[Any]) -> tuple[list[int], list[int | None], int | None]:
    """A version-2 conversation's tree: the order to insert its messages in (parents first, otherwise as
    listed), each one's parent as an index into that order, and the branch on screen's newest message. For a
    version-1 conversation (no message has an ``id``): as listed, a single branch."""
    if not any(isinstance(m, dict) and "id" in m for m in messages):
        return list(range(len(messages))), [], None
    position: dict[int, int] = {}  # id -> index in ``messages``
    parent_ids: list[int | None] = []
    for index, m in enumerate(messages):
        number = index + 1
        if not isinstance(m, dict):
            raise _Invalid(f"message {number}: it is {_kind(m)}, not an object")
        message_id = _reference(m, "id", number)
        if message_id is None:
            raise _Invalid(f"message {number} has no id, but others in the same conversation have one")
        if message_id in position:
            first = position[message_id] + 1
            raise _Invalid(f"message {number}: its id {message_id} is also message {first}'s")
        position[message_id] = index
        parent_ids.append(_reference(m, "parent", number))
    for number, parent in enumerate(parent_ids, start=1):
        if parent is not None and parent not in position:
            raise _Invalid(f"message {number}: its parent {parent} is not a message of this conversation")
    order: list[int] = []
    placed: dict[int, int] = {}  # index in ``messages`` -> index in ``order``
    for start in range(len(messages)):
        chain: list[int] = []
        in_chain: set[int] = set()
        step: int | None = start
        while step is not None and step not in placed:
            if step in in_chain:
                numbers = ", ".join(str(i + 1) for i in chain[chain.index(step) :][:10])
                raise _Invalid(f"messages {numbers} are each other's parents (a loop, not a conversation)")
            chain.append(step)
            in_chain.add(step)
            parent = parent_ids[step]
            step = None if parent is None else position[parent]
        for step in reversed(chain):
            placed[step] = len(order)
            order.append(step)
    parents: list[int | None] = []
    for step in order:
        parent = parent_ids[step]
        parents.append(None if parent is None else placed[position[parent]])
    current_id = item.get("current_message")
    if current_id is None:
        return order, parents, None
    if not isinstance(current_id, int) or isinstance(current_id, bool) or current_id not in position:
        shown = printable_line(repr(current_id))[:40]
        raise _Invalid(f"its current_message {shown} is not one of its messages")
    return order, parents, placed[position[current_id]]


def _reference(m: Mapping[str, Any], key: str, number: int) -> int | None:
    value = m.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _SQLITE_INTEGER:
        raise _Invalid(f"message {number}: its {key} is {_kind(value)}, not a message number")
    return value


def _message(m: Any, number: int) -> tuple[Any, ...]:
    try:
        if not isinstance(m, dict):
            raise _Invalid(f"it is {_kind(m)}, not an object")
        role = _text(m, "role", MAX_SHORT_TEXT_CHARACTERS)
        if role not in ROLES:
            raise _Invalid(f"its role is {printable_line(role)[:40]!r}, not one of {', '.join(ROLES)}")
        state = _text(m, "state", MAX_SHORT_TEXT_CHARACTERS, default="complete")
        state = "interrupted" if state == "streaming" else state  # it can no longer finish
        if state not in MESSAGE_STATES:
            raise _Invalid(f"its state is {printable_line(state)[:40]!r}")
        stats = _object(m, "stats", default=None)
        return (
            role,
            _text(m, "content", MAX_MESSAGE_CHARACTERS),
            _time(m, "created"),
            state,
            _count(m, "prompt_tokens"),
            _count(m, "evaluated_tokens"),
            _count(m, "generated_tokens"),
            dump_optional(stats),
        )
    except _Invalid as exc:
        raise _Invalid(f"message {number}: {exc}") from exc


def _sources(m: Mapping[str, Any], number: int) -> list[ReplySource]:
    """A message's sources as an export writes them (``ReplySource.to_dict``); none for older exports."""
    passages = []
    for position, data in enumerate(_list(m, "sources", MAX_SOURCES), start=1):
        try:
            if not isinstance(data, dict):
                raise TypeError(f"it is {_kind(data)}, not an object")
            source = ReplySource.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise _Invalid(f"message {number}: source {position} is not a passage ({exc})") from exc
        if (
            len(source.text) > MAX_MESSAGE_CHARACTERS
            or max(len(source.document_name), len(source.label)) > MAX_SHORT_TEXT_CHARACTERS
        ):
            raise _Invalid(f"message {number}: source {position} is too long")
        passages.append(source)
    return passages


def _document(d: Any, number: int) -> DocumentRow:
    try:
        if not isinstance(d, dict):
            raise _Invalid(f"it is {_kind(d)}, not an object")
        text = _text(d, "text", MAX_DOCUMENT_CHARACTERS, default="")
        meta = _object(d, "meta", default={})
        assert meta is not None
        layout = _object(d, "layout", default=None)
        if layout is not None:
            try:
                Document.from_stored(text, layout)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise _Invalid(f"its layout does not fit its text ({exc})") from exc
        else:
            layout = take_legacy_layout(meta, text)
        summary = d.get("summary")
        return DocumentRow(
            name=_text(d, "name", MAX_SHORT_TEXT_CHARACTERS),
            content_hash=_text(d, "content_hash", MAX_SHORT_TEXT_CHARACTERS),
            text=text,
            layout=layout,
            token_count=_count(d, "token_count"),
            summary=_text(d, "summary", MAX_DOCUMENT_CHARACTERS) if summary is not None else None,
            meta=meta,
            created_ms=_time(d, "created"),
        )
    except _Invalid as exc:
        raise _Invalid(f"attached document {number}: {exc}") from exc


# -- one field -----------------------------------------------------------------------------------------------

_MISSING = object()


def _kind(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) else "another kind"


def _field(item: Mapping[str, Any], key: str, default: Any) -> Any:
    value = item.get(key, default)
    if value is _MISSING:
        raise _Invalid(f"it has no {key}")
    return value


def _text(item: Mapping[str, Any], key: str, limit: int, default: Any = _MISSING) -> str:
    value = _field(item, key, default)
    if not isinstance(value, str):
        raise _Invalid(f"its {key} is {_kind(value)}, not text")
    if len(value) > limit:
        raise _Invalid(f"its {key} is {len(value):,} characters long (at most {limit:,})")
    return value


def _list(item: Mapping[str, Any], key: str, limit: int) -> list[Any]:
    value = _field(item, key, [])
    if not isinstance(value, list):
        raise _Invalid(f"its {key} is {_kind(value)}, not a list")
    if len(value) > limit:
        raise _Invalid(f"it has {len(value):,} {key} (at most {limit:,})")
    return value


def _count(item: Mapping[str, Any], key: str) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Invalid(f"its {key} is {_kind(value)}, not a whole number")
    if not 0 <= value <= MAX_TOKEN_COUNT:
        raise _Invalid(f"its {key} is out of range (0 to {MAX_TOKEN_COUNT:,})")
    return value


def _time(item: Mapping[str, Any], key: str) -> int:
    value = _field(item, key, _MISSING)
    if not isinstance(value, str) or len(value) > 64:
        raise _Invalid(f"its {key} time is {_kind(value)}, not an ISO 8601 time such as 2025-01-31T12:00:00Z")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _Invalid(f"its {key} time {value!r} is not a valid ISO 8601 time") from exc
    try:
        ms = to_ms(moment)
    except (ValueError, OverflowError, OSError):  # local time at year 1 or 9999 overflows
        ms = EARLIEST_MS - 1
    if not EARLIEST_MS <= ms <= LATEST_MS:
        raise _Invalid(
            f"its {key} time {value!r} is out of range (from {iso_time(EARLIEST_MS)[:10]} to "
            f"{iso_time(LATEST_MS)[:10]})"
        )
    return ms


def _object(item: Mapping[str, Any], key: str, default: dict[str, Any] | None) -> dict[str, Any] | None:
    value = item.get(key, default)
    if value is None:
        return default
    if not isinstance(value, dict):
        raise _Invalid(f"its {key} is {_kind(value)}, not an object")
    _check_nested(value, key, depth=1)
    if len(dump_json(value)) > MAX_OBJECT_CHARACTERS:
        raise _Invalid(f"its {key} is larger than {MAX_OBJECT_CHARACTERS // 2**20} MB")
    return value


def _check_nested(value: Any, key: str, depth: int) -> None:
    """Refuse what SQLite or a later reading cannot take: deep nesting, huge integers, NaN and infinity."""
    if depth > MAX_NESTING:
        raise _Invalid(f"its {key} is nested more than {MAX_NESTING} levels deep")
    if isinstance(value, dict):
        for inner in value.values():
            _check_nested(inner, key, depth + 1)
    elif isinstance(value, list):
        for inner in value:
            _check_nested(inner, key, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > _SQLITE_INTEGER:
        raise _Invalid(f"its {key} holds a number too large to store ({str(value)[:12]}...)")
    elif isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(f"its {key} holds {value}, which is not a number that can be stored")
