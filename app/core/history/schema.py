"""The history database's schema, as named migrations applied in order and recorded in ``schema_migrations``.

A released migration is never edited: a change is a new migration appended to ``MIGRATIONS``, and a migration
uses no code that later versions may change (it carries its own SQL and conversions). Before any migration
touches an existing file, ``database`` takes a full copy of it; a file with migrations this version does not
know was written by a newer version and is refused.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app import APP_NAME
from app.core.errors import UserError
from app.core.history.records import dump_json, load_dict, now_ms

log = logging.getLogger(__name__)


@contextlib.contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """One write transaction that takes the write lock up front (BEGIN IMMEDIATE), so two processes never
    deadlock upgrading a read to a write."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        # Also when COMMIT itself failed (a full disk): an open transaction would block every later write.
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


# -- migrations --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    name: str
    apply: Callable[[sqlite3.Connection], None]


def _execute_all(connection: sqlite3.Connection, statements: Sequence[str]) -> None:
    # Not executescript(): it commits first, and a migration must run inside its own transaction.
    for statement in statements:
        connection.execute(statement)


def _migrate_0001_conversations_and_messages(connection: sqlite3.Connection) -> None:
    _execute_all(
        connection,
        [
            """CREATE TABLE conversations (
                id INTEGER PRIMARY KEY,
                title TEXT NOT NULL DEFAULT '',
                mode TEXT NOT NULL,
                model TEXT NOT NULL DEFAULT '',
                settings TEXT NOT NULL DEFAULT '{}',
                created_ms INTEGER NOT NULL,
                updated_ms INTEGER NOT NULL
            )""",
            """CREATE TABLE messages (
                id INTEGER PRIMARY KEY,
                conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
                role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
                content TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                prompt_tokens INTEGER,
                evaluated_tokens INTEGER,
                generated_tokens INTEGER,
                stats TEXT,
                state TEXT NOT NULL DEFAULT 'complete'
                    CHECK (state IN ('complete', 'stopped', 'interrupted', 'streaming'))
            )""",
            "CREATE INDEX messages_by_conversation ON messages(conversation_id, id)",
        ],
    )


def _migrate_0002_message_search(connection: sqlite3.Connection) -> None:
    # External content: the text lives once, in messages; triggers keep the index in step with every change.
    _execute_all(
        connection,
        [
            """CREATE VIRTUAL TABLE messages_fts USING fts5(
                content, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
            )""",
            """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
                INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
            END""",
            """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
                INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
            END""",
            """CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
                INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
                INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
            END""",
            "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
        ],
    )


def _migrate_0003_trash_uuids_and_indexes(connection: sqlite3.Connection) -> None:
    _execute_all(
        connection,
        [
            "ALTER TABLE conversations ADD COLUMN uuid TEXT",
            "ALTER TABLE conversations ADD COLUMN deleted_ms INTEGER",
        ],
    )
    ids = [row[0] for row in connection.execute("SELECT id FROM conversations")]
    connection.executemany(
        "UPDATE conversations SET uuid = ? WHERE id = ?", [(str(uuid.uuid4()), i) for i in ids]
    )
    _execute_all(
        connection,
        [
            "CREATE UNIQUE INDEX conversations_by_uuid ON conversations(uuid)",
            # The list shows live conversations newest first. Read backwards, this index gives them in that
            # order (no sort, so the first page costs the same however long the list) and holds every column
            # the list shows (no lookup in the table per row: a third of the cost of listing 10,000).
            "CREATE INDEX conversations_by_recency ON conversations(deleted_ms, updated_ms, id, title, mode)",
            # Every open looks for replies a dead process left streaming: without this (tiny, as such rows
            # are rare) index that look would read every message.
            "CREATE INDEX messages_streaming ON messages(id) WHERE state = 'streaming'",
        ],
    )


def _migrate_0004_documents(connection: sqlite3.Connection) -> None:
    _execute_all(
        connection,
        [
            """CREATE TABLE documents (
                id INTEGER PRIMARY KEY,
                conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                content_hash TEXT NOT NULL,
                text TEXT NOT NULL DEFAULT '',
                page_starts TEXT NOT NULL DEFAULT '[]',
                token_count INTEGER,
                summary TEXT,
                meta TEXT NOT NULL DEFAULT '{}',
                created_ms INTEGER NOT NULL
            )""",
            "CREATE INDEX documents_by_conversation ON documents(conversation_id, id)",
            "CREATE INDEX documents_by_hash ON documents(content_hash)",
        ],
    )


def legacy_document_layout(document: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """A document as versions before migration 0005 kept it in ``meta["document"]`` (every section with its
    text) as its joined text and its text-free layout; None when it is not that shape.

    The layout is the one migration 0005 introduced (``Document.to_dict()``'s, which a test holds to it): the
    offsets of each section in the sections' texts joined by a blank line, empty sections left out.
    """
    sections = document.get("sections")
    if not isinstance(sections, list):
        return None
    texts: list[str] = []
    spans: list[dict[str, Any]] = []
    end = 0
    try:
        for section in sections:
            text = section["text"]
            if not isinstance(text, str):
                return None
            page = section.get("page")
            start = end
            if text:
                start += 2 if texts else 0
                end = start + len(text)
                texts.append(text)
            spans.append(
                {
                    "label": str(section["label"]),
                    "page": page if isinstance(page, int) else None,
                    "start": start,
                    "end": end,
                }
            )
        layout = {
            "name": str(document["name"]),
            "path": str(document["path"]),
            "kind": document["kind"],
            "sections": spans,
            "content_hash": str(document["content_hash"]),
            "size": int(document["size"]),
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return "\n\n".join(texts), layout


def take_legacy_layout(meta: dict[str, Any], text: str) -> dict[str, Any] | None:
    """The layout of the ``meta["document"]`` versions before migration 0005 kept, removed from ``meta``, when
    its sections add up to ``text``. Otherwise None, and ``meta`` is left as it was: such a document is still
    read the old way, from its sections (``HistoryStore.attached_documents``)."""
    legacy = meta.get("document")
    converted = legacy_document_layout(legacy) if isinstance(legacy, dict) else None
    if converted is None or converted[0] != text:
        return None
    del meta["document"]
    return converted[1]


def _migrate_0005_document_text_once(connection: sqlite3.Connection) -> None:
    # A document's text was kept twice: in ``text`` and, section by section, in meta["document"]. The sections
    # become a text-free ``layout``; ``page_starts``, which nothing read, goes. SQLite cannot drop a column
    # before 3.35, so the table is rebuilt (the documented way, and the same on every version).
    _execute_all(
        connection,
        [
            """CREATE TABLE documents_0005 (
                id INTEGER PRIMARY KEY,
                conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                content_hash TEXT NOT NULL,
                text TEXT NOT NULL DEFAULT '',
                layout TEXT,
                token_count INTEGER,
                summary TEXT,
                meta TEXT NOT NULL DEFAULT '{}',
                created_ms INTEGER NOT NULL
            )"""
        ],
    )
    rows = connection.execute(
        "SELECT id, conversation_id, name, content_hash, text, token_count, summary, meta, created_ms "
        "FROM documents ORDER BY id"
    )
    for (
        document_id,
        conversation_id,
        name,
        content_hash,
        text,
        token_count,
        summary,
        meta_text,
        created,
    ) in rows:
        meta = load_dict(meta_text)
        layout = take_legacy_layout(meta, text)
        connection.execute(
            "INSERT INTO documents_0005 (id, conversation_id, name, content_hash, text, layout, token_count, "
            "summary, meta, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                document_id,
                conversation_id,
                name,
                content_hash,
                text,
                None if layout is None else dump_json(layout),
                token_count,
                summary,
                dump_json(meta),
                created,
            ),
        )
    _execute_all(
        connection,
        [
            "DROP TABLE documents",
            "ALTER TABLE documents_0005 RENAME TO documents",
            "CREATE INDEX documents_by_conversation ON documents(conversation_id, id)",
            "CREATE INDEX documents_by_hash ON documents(content_hash)",
        ],
    )


def _migrate_0006_branches(connection: sqlite3.Connection) -> None:
    # A conversation becomes a tree: each message names its parent (None for the first), and the conversation
    # remembers the leaf of the branch on screen. Every older conversation is one branch: each message's parent
    # is the message before it, and its leaf is its newest message.
    _execute_all(
        connection,
        [
            "ALTER TABLE messages ADD COLUMN parent_id INTEGER REFERENCES messages(id)",
            "ALTER TABLE conversations ADD COLUMN current_leaf_id INTEGER",
            """UPDATE messages SET parent_id = (
                SELECT max(earlier.id) FROM messages AS earlier
                WHERE earlier.conversation_id = messages.conversation_id AND earlier.id < messages.id
            )""",
            """UPDATE conversations SET current_leaf_id = (
                SELECT max(id) FROM messages WHERE messages.conversation_id = conversations.id
            )""",
            # The siblings of a message (the versions "< 2/3 >" moves between) and the children of a branch.
            "CREATE INDEX messages_by_parent ON messages(conversation_id, parent_id, id)",
        ],
    )


def _migrate_0007_reply_sources(connection: sqlite3.Connection) -> None:
    # The passages a reply was given (``sources.ReplySource``), in the order the model read them; deleting a
    # reply deletes its sources (the history turns foreign keys on).
    connection.execute(
        """CREATE TABLE reply_sources (
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            document_name TEXT NOT NULL,
            label TEXT NOT NULL,
            page INTEGER,
            text TEXT NOT NULL,
            PRIMARY KEY (message_id, position)
        ) WITHOUT ROWID"""
    )


def _migrate_0009_source_paths(connection: sqlite3.Connection) -> None:
    # A source from a library (app.core.library) is a file the conversation never attached, so its path cannot be
    # looked up among the conversation's documents: it is kept with the source. NULL for the sources before
    # (attached documents' passages, whose path is looked up as before).
    connection.execute("ALTER TABLE reply_sources ADD COLUMN path TEXT")


def _migrate_0008_viewed_paths(connection: sqlite3.Connection) -> None:
    # Each message remembers which of its children was last on the branch on screen, so going back to a version
    # shows the path last viewed below it (``branches``). No foreign key: deleting a conversation would then
    # look up every deleted message in this column, which no index serves; a reader checks that the child is
    # still a child. The only path known to have been viewed is each conversation's branch on screen now.
    connection.execute("ALTER TABLE messages ADD COLUMN viewed_child_id INTEGER")
    choices = connection.execute(
        """WITH RECURSIVE path(id, parent, conversation) AS (
            SELECT m.id, m.parent_id, m.conversation_id FROM conversations AS c
            JOIN messages AS m ON m.id = c.current_leaf_id AND m.conversation_id = c.id
            UNION
            SELECT m.id, m.parent_id, m.conversation_id FROM messages AS m
            JOIN path ON m.id = path.parent AND m.conversation_id = path.conversation
        ) SELECT id, parent FROM path WHERE parent IS NOT NULL"""
    ).fetchall()
    connection.executemany("UPDATE messages SET viewed_child_id = ? WHERE id = ?", choices)


MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_conversations_and_messages", _migrate_0001_conversations_and_messages),
    Migration("0002_message_search", _migrate_0002_message_search),
    Migration("0003_trash_uuids_and_indexes", _migrate_0003_trash_uuids_and_indexes),
    Migration("0004_documents", _migrate_0004_documents),
    Migration("0005_document_text_once", _migrate_0005_document_text_once),
    Migration("0006_branches", _migrate_0006_branches),
    Migration("0007_reply_sources", _migrate_0007_reply_sources),
    Migration("0008_viewed_paths", _migrate_0008_viewed_paths),
    Migration("0009_source_paths", _migrate_0009_source_paths),
)


def migrate(connection: sqlite3.Connection, pending: Sequence[Migration]) -> None:
    """Apply ``pending`` in order, each in its own transaction with its row in ``schema_migrations``."""
    if not pending:
        return
    connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_ms INTEGER NOT NULL)"
    )
    for migration in pending:
        with transaction(connection):
            # Another process may have migrated since we looked: the write lock makes this check exact.
            done = connection.execute(
                "SELECT 1 FROM schema_migrations WHERE name = ?", (migration.name,)
            ).fetchone()
            if done:
                continue
            migration.apply(connection)
            connection.execute(
                "INSERT INTO schema_migrations (name, applied_ms) VALUES (?, ?)", (migration.name, now_ms())
            )
            log.info("History database: applied migration %s", migration.name)
    connection.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")  # for people inspecting the file


def refuse_newer(path: Path, applied: Sequence[str]) -> None:
    """Raise UserError when ``applied`` holds migrations this version does not know (a newer one wrote it)."""
    unknown = sorted(set(applied) - {migration.name for migration in MIGRATIONS})
    if unknown:
        raise UserError(
            f"The conversation history at {path} was written by a newer version of {APP_NAME} (it has changes "
            f"this version does not know: {', '.join(unknown)}). Update {APP_NAME} to open it; nothing in it "
            "was changed."
        )
