"""Conversation history: a local SQLite store that keeps every message, even through crashes and upgrades.

What keeps history from being lost (the failures users of other apps reported, see PEERS.md):

- Every message is its own committed transaction. A user message is stored before the model is asked; a reply's
  row is created at its first piece of text and rewritten at most once a second while it streams
  (``ReplyRecorder``), so a killed process loses at most the last second of a reply. Rows a dead process left
  ``streaming`` are marked ``interrupted`` when the store is next opened.
- WAL journal with ``synchronous=FULL``: a commit is on disk when it returns, also through a power cut. FULL
  costs one fsync per commit; we commit about once a second while streaming and once per bulk operation, so
  the cost is invisible, while NORMAL could lose the last replies to a power cut.
- Schema changes are named migrations recorded in ``schema_migrations`` and applied in order. Before any
  migration touches an existing database, a full copy is taken beside it (``history.sqlite3.bak-v<N>-<time>``).
  A released migration is never edited: a change is a new migration appended to ``MIGRATIONS``.
- A database written by a newer version is refused with a sentence and left byte-for-byte untouched.
- A damaged file, or one that is not a database, is moved aside (never deleted) and a fresh history started;
  ``HistoryStore.recovery_notice`` says where the old file went.
- The file is readable by its owner only (0600) in an owner-only folder (0700): conversations are private.

Threading: one ``HistoryStore`` holds one connection. Use it from one thread (the CLI's main thread, or the
window's history owner). A lock makes accidental use from a second thread safe rather than corrupting.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import sqlite3
import threading
import time
import uuid as uuid_module
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from app import APP_NAME
from app.core.errors import UserError
from app.core.paths import app_paths

if TYPE_CHECKING:
    from app.core.llm.engine import ChatMessage

log = logging.getLogger(__name__)

MessageState = Literal["complete", "stopped", "interrupted", "streaming"]
FinalState = Literal["complete", "stopped", "interrupted"]
MESSAGE_STATES: tuple[MessageState, ...] = ("complete", "stopped", "interrupted", "streaming")
ROLES = ("system", "user", "assistant")

EXPORT_FORMAT = "llamadesk-history"
EXPORT_VERSION = 1
TITLE_LENGTH = 60
BUSY_TIMEOUT_SECONDS = 5.0
SNIPPET_OPEN, SNIPPET_CLOSE = "«", "»"
# Ranking or grouping a match costs microseconds, and a common word matches a large part of a big history:
# queries look at the newest MATCH_WINDOW matching messages, which keeps a common word as quick as a rare one.
# For such a word the recent messages are the likelier target anyway; a rarer word is searched in full.
MATCH_WINDOW = 2000
# A one-letter prefix matches hundreds of words: filtering as the user types starts at the second letter.
PREFIX_MIN_LENGTH = 2

# SQLite result codes that mean "this file is damaged or is not a database" (not "busy" or "no permission").
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


class ConversationNotFoundError(UserError):
    """A conversation id that is not in the history (never was, or purged from the trash)."""


class HistoryWriteError(UserError):
    """The history could not be written or read right now: a full disk, a locked or failing file."""


def _storage_error(error: sqlite3.Error, action: str) -> HistoryWriteError:
    text = str(error).lower()
    if "full" in text:
        cause = "the disk is full"
        advice = "Free some disk space; what is on screen is still there, and saving resumes by itself."
    elif "locked" in text or "busy" in text:
        cause = "another program is holding the history file"
        advice = "Close other LlamaDesk windows or commands and try again."
    else:
        cause = f"the history file could not be used ({error})"
        advice = "Check the disk; what is on screen is still there."
    return HistoryWriteError(f"The conversation could not be {action}: {cause}. {advice}")


class HistoryFormatError(UserError):
    """A file given to import that is not a LlamaDesk history export."""


# -- records -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    id: int
    uuid: str  # stable across export and import, so importing a file twice does not duplicate it
    title: str  # "" until the first user message gives one (see ``display_title``)
    mode: str
    model: str  # the model file's path as it was when the conversation was started
    settings: dict[str, Any]
    created: datetime
    updated: datetime
    deleted: datetime | None  # in the trash since then; None for a live conversation

    @property
    def display_title(self) -> str:
        return self.title or "New conversation"


class ConversationSummary(NamedTuple):
    """One row of the conversation list: enough to draw it without loading messages.

    A named tuple with the time kept as a number: the list can hold 10,000 rows and is rebuilt as the user
    types a filter, and building a dataclass and a datetime per row would be most of its cost.
    """

    id: int
    title: str
    mode: str
    updated_ms: int  # unix time in milliseconds
    group: str  # Today / Yesterday / Previous 7 days / Older

    @property
    def updated(self) -> datetime:
        return _to_datetime(self.updated_ms)

    @property
    def display_title(self) -> str:
        return self.title or "New conversation"


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: str
    content: str
    created: datetime
    state: MessageState
    prompt_tokens: int | None = None
    evaluated_tokens: int | None = None
    generated_tokens: int | None = None
    stats: dict[str, Any] | None = None


@dataclass(frozen=True)
class Document:
    """A document attached to a conversation: its extracted text, where its pages start, and its summary."""

    id: int
    conversation_id: int
    name: str
    content_hash: str  # of the original file's bytes, to recognize the same file attached again
    text: str
    page_starts: list[int]  # character offset in ``text`` where each page begins; [] for unpaged formats
    token_count: int | None
    summary: str | None
    meta: dict[str, Any]
    created: datetime

    @property
    def pages(self) -> list[str]:
        """The text page by page (one item for unpaged formats)."""
        if not self.page_starts:
            return [self.text]
        bounds = [*self.page_starts, len(self.text)]
        return [self.text[start:end] for start, end in itertools.pairwise(bounds)]


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    conversation_title: str
    message_id: int
    role: str
    created: datetime
    snippet: str  # the matching words wrapped in « and »
    score: float  # bm25: lower is a better match


@dataclass
class ImportResult:
    imported: list[int] = field(default_factory=list)  # ids of the conversations added
    skipped: int = 0  # already in the history (same uuid)


# -- time --------------------------------------------------------------------------------------------------


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a naive time is the computer's local time
    return round(moment.timestamp() * 1000)


def _iso(ms: int) -> str:
    return _to_datetime(ms).isoformat(timespec="milliseconds")


def group_label(updated: datetime, now: datetime) -> str:
    """The heading a conversation is listed under (Today, Yesterday, Previous 7 days, Older), by calendar
    day in ``now``'s time zone; a naive ``now`` is the computer's local time."""
    return _label_for(_to_ms(updated), _group_starts(now))


def _group_starts(now: datetime) -> tuple[int, int, int]:
    """When today, yesterday and the previous 7 days began (unix ms): computed once for a whole list."""

    def midnight(days_back: int) -> int:
        day = now.date() - timedelta(days=days_back)
        start = datetime(day.year, day.month, day.day, tzinfo=now.tzinfo)
        return _to_ms(start)  # naive: local time with its own daylight-saving offset on that day

    return midnight(0), midnight(1), midnight(7)


def _label_for(updated_ms: int, starts: tuple[int, int, int]) -> str:
    today, yesterday, week = starts
    if updated_ms >= today:  # also a "future" time from a clock set back: it is the newest
        return "Today"
    if updated_ms >= yesterday:
        return "Yesterday"
    if updated_ms >= week:
        return "Previous 7 days"
    return "Older"


def auto_title(text: str, limit: int = TITLE_LENGTH) -> str:
    """A conversation's title from its first message: one line, cut at a word, at most ``limit`` characters."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:-") + "…"


def fts_query(text: str, *, prefix_last: bool = False) -> str | None:
    """User text as an FTS5 query that cannot be a syntax error: every word quoted, all words required.

    Words without a letter or digit are left out (FTS would find nothing for them). With ``prefix_last`` the
    last word, from its second letter on, also matches longer words, for search-as-you-type. None when
    nothing searchable is left.
    """
    words = [word for word in text.split() if any(ch.isalnum() for ch in word)]
    if not words:
        return None
    quoted = ['"' + word.replace('"', '""') + '"' for word in words]
    if prefix_last and len(words[-1]) >= PREFIX_MIN_LENGTH:
        quoted[-1] += "*"
    return " ".join(quoted)


# -- schema migrations -------------------------------------------------------------------------------------


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
        "UPDATE conversations SET uuid = ? WHERE id = ?", [(str(uuid_module.uuid4()), i) for i in ids]
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


MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_conversations_and_messages", _migrate_0001_conversations_and_messages),
    Migration("0002_message_search", _migrate_0002_message_search),
    Migration("0003_trash_uuids_and_indexes", _migrate_0003_trash_uuids_and_indexes),
    Migration("0004_documents", _migrate_0004_documents),
)


# -- opening a database safely ------------------------------------------------------------------------------


def _is_damage(error: sqlite3.DatabaseError) -> bool:
    """True for "damaged / not a database"; False for "locked", "no permission" and other passing troubles."""
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(error).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text


def _timestamp_for_file_name() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def _free_name(path: Path) -> Path:
    """``path``, or ``path`` with -2, -3 ... appended if a file of that name is already there."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}-{number}")
    return candidate


def _create_private_file(path: Path) -> None:
    descriptor = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(descriptor)
    os.chmod(path, 0o600)


@dataclass(frozen=True)
class _Inspection:
    """What a read-only look at an existing file found."""

    damage: str | None = None  # "damaged" or "foreign" when the file must be moved aside
    applied: tuple[str, ...] = ()  # the migrations it has


def _inspect(path: Path) -> _Inspection:
    """Check an existing file read-only, so that a file we refuse is left exactly as it was."""
    connection = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        check = [row[0] for row in connection.execute("PRAGMA quick_check")]
        if check != ["ok"]:
            log.warning("History database %s failed its check: %s", path, "; ".join(map(str, check[:5])))
            return _Inspection(damage="damaged")
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "schema_migrations" not in tables:
            return _Inspection(damage="foreign" if tables else None)
        applied = tuple(
            row[0] for row in connection.execute("SELECT name FROM schema_migrations ORDER BY name")
        )
    except sqlite3.DatabaseError as exc:
        if _is_damage(exc):
            log.warning("History database %s cannot be read: %s", path, exc)
            return _Inspection(damage="damaged")
        raise UserError(
            f"The conversation history at {path} could not be opened ({exc}). Close other copies of "
            f"{APP_NAME} and try again."
        ) from exc
    finally:
        connection.close()
    unknown = sorted(set(applied) - {migration.name for migration in MIGRATIONS})
    if unknown:
        raise UserError(
            f"The conversation history at {path} was written by a newer version of {APP_NAME} (it has changes "
            f"this version does not know: {', '.join(unknown)}). Update {APP_NAME} to open it; nothing in it "
            "was changed."
        )
    return _Inspection(applied=applied)


# -- the store -----------------------------------------------------------------------------------------------


class HistoryStore:
    """All conversations, messages and attached documents. Opening it migrates, repairs and recovers."""

    def __init__(self, path: Path | None = None) -> None:
        default = path is None
        self.path = app_paths().history_db if path is None else Path(path)
        self.recovery_notice: str | None = None  # a sentence for the user when a damaged file was moved aside
        self.backup_path: Path | None = None  # the copy taken before migrating, if one was needed
        self._lock = threading.RLock()
        self._prepare_folder(enforce_private=default)
        self._connection = self._open()

    # -- opening -------------------------------------------------------------------------------------------

    def _prepare_folder(self, *, enforce_private: bool) -> None:
        folder = self.path.parent
        if not folder.exists():
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        elif enforce_private:
            # Our own data folder: tighten it if an older install or a copy left it open to others.
            os.chmod(folder, 0o700)

    def _open(self) -> sqlite3.Connection:
        applied: tuple[str, ...] = ()
        if self.path.exists() and self.path.stat().st_size > 0:
            inspection = _inspect(self.path)
            if inspection.damage:
                self._move_aside(inspection.damage)
            else:
                applied = inspection.applied
        _create_private_file(self.path)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so every transaction takes the write lock
        # up front and two processes never deadlock upgrading a read to a write.
        connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            pending = [migration for migration in MIGRATIONS if migration.name not in applied]
            if pending and applied:
                # Before anything changes the file, even its journal mode: the copy is the file as it was.
                self.backup_path = self._backup(connection, version=len(applied))
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA foreign_keys = ON")
            self._migrate(connection, pending)
            interrupted = connection.execute(
                "UPDATE messages SET state = 'interrupted' WHERE state = 'streaming'"
            ).rowcount
            if interrupted:
                log.info(
                    "Marked %d reply(ies) interrupted: the process writing them ended mid-reply.", interrupted
                )
        except BaseException:
            connection.close()
            raise
        return connection

    def _move_aside(self, damage: str) -> None:
        stamp = _timestamp_for_file_name()
        target = _free_name(self.path.with_name(f"{self.path.name}.corrupt-{stamp}"))
        self.path.rename(target)
        # The journal files belong to the old file; left here they would be replayed into the new one.
        for suffix in ("-wal", "-shm", "-journal"):
            companion = self.path.with_name(self.path.name + suffix)
            if companion.exists():
                companion.rename(target.with_name(target.name + suffix))
        what = "was damaged" if damage == "damaged" else f"was not a {APP_NAME} conversation history"
        self.recovery_notice = (
            f"The conversation history file {what}, so {APP_NAME} moved it to {target} and started a new, empty "
            "history. Nothing was deleted: keep that file if you want to try to recover old conversations."
        )
        log.warning("%s", self.recovery_notice)

    @staticmethod
    def _migrate(connection: sqlite3.Connection, pending: Sequence[Migration]) -> None:
        if not pending:
            return
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_ms INTEGER NOT NULL)"
        )
        for migration in pending:
            with _transaction(connection):
                # Another process may have migrated since we looked: the write lock makes this check exact.
                done = connection.execute(
                    "SELECT 1 FROM schema_migrations WHERE name = ?", (migration.name,)
                ).fetchone()
                if done:
                    continue
                migration.apply(connection)
                connection.execute(
                    "INSERT INTO schema_migrations (name, applied_ms) VALUES (?, ?)",
                    (migration.name, _now_ms()),
                )
                log.info("History database: applied migration %s", migration.name)
        connection.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")  # for people inspecting the file

    def _backup(self, connection: sqlite3.Connection, *, version: int) -> Path:
        target = _free_name(
            self.path.with_name(f"{self.path.name}.bak-v{version}-{_timestamp_for_file_name()}")
        )
        _create_private_file(target)
        copy = sqlite3.connect(target)
        try:
            connection.backup(copy)
        finally:
            copy.close()
        log.info("History database backed up to %s before migrating", target)
        return target

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._connection.execute("PRAGMA optimize")
            self._connection.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._lock, _transaction(self._connection):
                yield self._connection
        except sqlite3.OperationalError as exc:
            # Disk full, locked, I/O error: the environment's fault, so a sentence, not a traceback.
            raise _storage_error(exc, "saved") from exc

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                cursor = self._connection.execute(sql, parameters)
                cursor.row_factory = sqlite3.Row
                return cursor.fetchall()
        except sqlite3.OperationalError as exc:
            raise _storage_error(exc, "read") from exc

    def integrity_check(self) -> list[str]:
        """SQLite's full check: ["ok"] for a healthy file."""
        return [str(row[0]) for row in self._read("PRAGMA integrity_check")]

    def applied_migrations(self) -> list[str]:
        return [row["name"] for row in self._read("SELECT name FROM schema_migrations ORDER BY name")]

    # -- conversations ---------------------------------------------------------------------------------------

    def create_conversation(
        self,
        *,
        mode: str = "chat",
        model: str = "",
        settings: Mapping[str, Any] | None = None,
        title: str = "",
    ) -> Conversation:
        now = _now_ms()
        with self._write() as connection:
            cursor = connection.execute(
                "INSERT INTO conversations (uuid, title, mode, model, settings, created_ms, updated_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(uuid_module.uuid4()), _one_line(title), mode, model, _dump(settings or {}), now, now),
            )
            conversation_id = _row_id(cursor)
        return self.get_conversation(conversation_id)

    def get_conversation(self, conversation_id: int) -> Conversation:
        rows = self._read(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)
        )
        if not rows:
            raise ConversationNotFoundError(
                f"There is no conversation {conversation_id} in the history. List them with: llamadesk history list"
            )
        return _conversation(rows[0])

    def find_conversation(self, conversation_uuid: str) -> Conversation | None:
        rows = self._read(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE uuid = ?", (conversation_uuid,)
        )
        return _conversation(rows[0]) if rows else None

    def update_conversation(
        self,
        conversation_id: int,
        *,
        mode: str | None = None,
        model: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a change of mode, model or settings mid-conversation, so reopening restores the latest."""
        changes: dict[str, Any] = {}
        if mode is not None:
            changes["mode"] = mode
        if model is not None:
            changes["model"] = model
        if settings is not None:
            changes["settings"] = _dump(settings)
        if not changes:
            return
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._write() as connection:
            self._require(connection, conversation_id)
            connection.execute(
                f"UPDATE conversations SET {assignments} WHERE id = ?", (*changes.values(), conversation_id)
            )

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        line = _one_line(title)
        if not line:
            raise UserError("A conversation's title cannot be empty. Type a few words to name it.")
        with self._write() as connection:
            self._require(connection, conversation_id)
            connection.execute("UPDATE conversations SET title = ? WHERE id = ?", (line, conversation_id))

    def delete_conversation(self, conversation_id: int) -> None:
        """Move to the trash: gone from the list and from search, back with ``restore_conversation``."""
        with self._write() as connection:
            self._require(connection, conversation_id)
            connection.execute(
                "UPDATE conversations SET deleted_ms = ? WHERE id = ? AND deleted_ms IS NULL",
                (_now_ms(), conversation_id),
            )

    def restore_conversation(self, conversation_id: int) -> None:
        with self._write() as connection:
            self._require(connection, conversation_id)
            connection.execute("UPDATE conversations SET deleted_ms = NULL WHERE id = ?", (conversation_id,))

    def purge_trash(self, older_than: timedelta = timedelta(0)) -> int:
        """Delete for good what has been in the trash longer than ``older_than``; returns how many."""
        cutoff = _now_ms() - int(older_than.total_seconds() * 1000)
        with self._write() as connection:
            return connection.execute(
                "DELETE FROM conversations WHERE deleted_ms IS NOT NULL AND deleted_ms <= ?", (cutoff,)
            ).rowcount

    def list_trash(self) -> list[Conversation]:
        rows = self._read(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE deleted_ms IS NOT NULL "
            "ORDER BY deleted_ms DESC"
        )
        return [_conversation(row) for row in rows]

    def list_conversations(
        self,
        query: str | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        now: datetime | None = None,
    ) -> list[ConversationSummary]:
        """Live conversations, most recently updated first, each with its group label.

        ``query`` keeps those whose title contains it or that have a message matching all its words (the last
        word as a prefix, for filtering as the user types; the newest ``MATCH_WINDOW`` matching messages).
        """
        where, parameters = self._list_filter(query)
        sql = (
            "SELECT id, title, mode, updated_ms FROM conversations "
            f"WHERE {where} ORDER BY updated_ms DESC, id DESC LIMIT ? OFFSET ?"
        )
        with self._lock:
            # Plain tuples, not sqlite3.Row: this list can be 10,000 rows long and is redrawn as the user types.
            rows = self._connection.execute(
                sql, (*parameters, -1 if limit is None else limit, offset)
            ).fetchall()
        starts = _group_starts(now or datetime.now())
        return [
            ConversationSummary(conversation_id, title, mode, updated_ms, _label_for(updated_ms, starts))
            for conversation_id, title, mode, updated_ms in rows
        ]

    def count_conversations(self, query: str | None = None) -> int:
        where, parameters = self._list_filter(query)
        return int(self._read(f"SELECT count(*) FROM conversations WHERE {where}", parameters)[0][0])

    @staticmethod
    def _list_filter(query: str | None) -> tuple[str, list[Any]]:
        where = "deleted_ms IS NULL"
        parameters: list[Any] = []
        text = (query or "").strip()
        if text:
            like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            match = fts_query(text, prefix_last=True)
            if match:
                where += (
                    " AND (title LIKE ? ESCAPE '\\' OR id IN (SELECT conversation_id FROM messages WHERE id IN "
                    "(SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? ORDER BY rowid DESC LIMIT ?)))"
                )
                parameters = [like, match, MATCH_WINDOW]
            else:
                where += " AND title LIKE ? ESCAPE '\\'"
                parameters = [like]
        return where, parameters

    @staticmethod
    def _require(connection: sqlite3.Connection, conversation_id: int) -> None:
        if (
            connection.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            is None
        ):
            raise ConversationNotFoundError(
                f"There is no conversation {conversation_id} in the history. List them with: llamadesk history list"
            )

    # -- messages ----------------------------------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str,
        *,
        state: MessageState = "complete",
        stats: Mapping[str, Any] | None = None,
    ) -> Message:
        """Store one message and commit at once: a user message is safe before the model is even asked."""
        with self._write() as connection:
            message_id = self._insert_message(connection, conversation_id, role, content, state, stats)
        return self.get_message(message_id)

    def _insert_message(
        self,
        connection: sqlite3.Connection,
        conversation_id: int,
        role: str,
        content: str,
        state: MessageState,
        stats: Mapping[str, Any] | None,
        created_ms: int | None = None,
    ) -> int:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self._require(connection, conversation_id)
        now = _now_ms() if created_ms is None else created_ms
        cursor = connection.execute(
            "INSERT INTO messages (conversation_id, role, content, created_ms, state, prompt_tokens, "
            "evaluated_tokens, generated_tokens, stats) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (conversation_id, role, content, now, state, *_token_counts(stats), _dump_optional(stats)),
        )
        connection.execute(
            "UPDATE conversations SET updated_ms = max(updated_ms, ?) WHERE id = ?", (now, conversation_id)
        )
        if role == "user":
            connection.execute(
                "UPDATE conversations SET title = ? WHERE id = ? AND title = ''",
                (auto_title(content), conversation_id),
            )
        return _row_id(cursor)

    def get_message(self, message_id: int) -> Message:
        rows = self._read(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,))
        if not rows:
            raise UserError(f"There is no message {message_id} in the history.")
        return _message(rows[0])

    def delete_message(self, message_id: int) -> None:
        """Remove one message: a reply being regenerated, or a question taken back to be edited."""
        with self._write() as connection:
            connection.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    def messages(self, conversation_id: int) -> list[Message]:
        """The conversation's messages, oldest first."""
        rows = self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        )
        return [_message(row) for row in rows]

    def chat_messages(self, conversation_id: int, system_prompt: str | None = None) -> list[ChatMessage]:
        """The turns to send to the engine for the next reply: earlier turns as context, oldest first.

        Interrupted and stopped replies are included as far as they got: it is what the user saw and answered.
        """
        turns: list[ChatMessage] = []
        if system_prompt:
            turns.append({"role": "system", "content": system_prompt})
        for message in self.messages(conversation_id):
            if message.content:
                turns.append({"role": message.role, "content": message.content})
        return turns

    def begin_reply(
        self,
        conversation_id: int,
        *,
        role: str = "assistant",
        flush_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> ReplyRecorder:
        """Start recording a streamed reply (see ``ReplyRecorder``)."""
        self.get_conversation(conversation_id)  # fail now, not at the first token
        return ReplyRecorder(self, conversation_id, role=role, flush_interval=flush_interval, clock=clock)

    def _start_streaming(self, conversation_id: int, role: str, content: str) -> int:
        with self._write() as connection:
            return self._insert_message(connection, conversation_id, role, content, "streaming", None)

    def _save_streaming(self, message_id: int, content: str) -> None:
        with self._write() as connection:
            # Setting the state again undoes another process's open, which took this live reply for a dead one.
            connection.execute(
                "UPDATE messages SET content = ?, state = 'streaming' WHERE id = ?", (content, message_id)
            )

    def _finish_streaming(
        self, message_id: int, content: str, state: FinalState, stats: Mapping[str, Any] | None
    ) -> None:
        now = _now_ms()
        with self._write() as connection:
            connection.execute(
                "UPDATE messages SET content = ?, state = ?, prompt_tokens = ?, evaluated_tokens = ?, "
                "generated_tokens = ?, stats = ? WHERE id = ?",
                (content, state, *_token_counts(stats), _dump_optional(stats), message_id),
            )
            connection.execute(
                "UPDATE conversations SET updated_ms = max(updated_ms, ?) "
                "WHERE id = (SELECT conversation_id FROM messages WHERE id = ?)",
                (now, message_id),
            )

    # -- documents ---------------------------------------------------------------------------------------------

    def add_document(
        self,
        conversation_id: int,
        name: str,
        content_hash: str,
        text: str,
        *,
        page_starts: Sequence[int] = (),
        token_count: int | None = None,
        summary: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Document:
        """Attach a document's extracted text to a conversation (committed at once)."""
        with self._write() as connection:
            document_id = self._insert_document(
                connection, conversation_id, name, content_hash, text, page_starts, token_count, summary, meta
            )
        return self.get_document(document_id)

    def _insert_document(
        self,
        connection: sqlite3.Connection,
        conversation_id: int,
        name: str,
        content_hash: str,
        text: str,
        page_starts: Sequence[int],
        token_count: int | None,
        summary: str | None,
        meta: Mapping[str, Any] | None,
        created_ms: int | None = None,
    ) -> int:
        self._require(connection, conversation_id)
        cursor = connection.execute(
            "INSERT INTO documents (conversation_id, name, content_hash, text, page_starts, token_count, summary, "
            "meta, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                conversation_id,
                name,
                content_hash,
                text,
                _dump(list(page_starts)),
                token_count,
                summary,
                _dump(meta or {}),
                _now_ms() if created_ms is None else created_ms,
            ),
        )
        return _row_id(cursor)

    def get_document(self, document_id: int) -> Document:
        rows = self._read(f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE id = ?", (document_id,))
        if not rows:
            raise UserError(f"There is no attached document {document_id} in the history.")
        return _document(rows[0])

    def documents_for(self, conversation_id: int) -> list[Document]:
        """The documents attached to a conversation, in the order they were attached."""
        rows = self._read(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        )
        return [_document(row) for row in rows]

    def set_document_summary(self, document_id: int, summary: str, token_count: int | None = None) -> None:
        with self._write() as connection:
            connection.execute(
                "UPDATE documents SET summary = ?, token_count = coalesce(?, token_count) WHERE id = ?",
                (summary, token_count, document_id),
            )

    def remove_document(self, document_id: int) -> None:
        with self._write() as connection:
            connection.execute("DELETE FROM documents WHERE id = ?", (document_id,))

    # -- search ------------------------------------------------------------------------------------------------

    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Messages containing all the words of ``text``, best match first (bm25), with a marked snippet.

        A query found in more than ``MATCH_WINDOW`` messages is ranked among its newest ``MATCH_WINDOW``.
        """
        match = fts_query(text)
        if match is None or limit <= 0:
            return []
        with self._lock:
            connection = self._connection
            oldest_ranked = connection.execute(
                "SELECT min(rowid) FROM (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? "
                "ORDER BY rowid DESC LIMIT ?)",
                (match, MATCH_WINDOW),
            ).fetchone()[0]
            if oldest_ranked is None:
                return []
            # Ranked in the search index alone, then trashed conversations left out: joining every candidate
            # to its conversation before the sort would cost more than the ranking itself. Trashed hits are
            # few, so asking for a few more than needed nearly always suffices; if not, ask for more.
            wanted = limit + 10
            while True:
                ranked = connection.execute(
                    "SELECT rowid, rank FROM messages_fts WHERE messages_fts MATCH ? AND rowid >= ? "
                    "ORDER BY rank LIMIT ?",
                    (match, oldest_ranked, wanted),
                ).fetchall()
                placeholders = ", ".join("?" * len(ranked))
                details = {
                    row[0]: row[1:]
                    for row in connection.execute(
                        # CROSS JOIN keeps SQLite from starting at the conversations (a scan of all of them).
                        "SELECT m.id, m.conversation_id, m.role, m.created_ms, c.title FROM messages AS m "
                        "CROSS JOIN conversations AS c ON c.id = m.conversation_id "
                        f"WHERE m.id IN ({placeholders}) AND c.deleted_ms IS NULL",
                        [message_id for message_id, _score in ranked],
                    )
                }
                hits = [(message_id, score) for message_id, score in ranked if message_id in details][:limit]
                if len(hits) == limit or len(ranked) < wanted:
                    break
                wanted *= 4
            # Snippets only for the hits shown: in the ranking query they would be made for every candidate.
            # "+rowid" keeps the list away from FTS5, which would restart the query once per value; one pass
            # over the hits' rowid range, filtered by SQLite, costs a tenth of that.
            hit_ids = [message_id for message_id, _score in hits]
            placeholders = ", ".join("?" * len(hit_ids))
            snippets = dict(
                connection.execute(
                    "SELECT rowid, snippet(messages_fts, 0, ?, ?, '…', 12) FROM messages_fts "
                    f"WHERE messages_fts MATCH ? AND rowid BETWEEN ? AND ? AND +rowid IN ({placeholders})",
                    (
                        SNIPPET_OPEN,
                        SNIPPET_CLOSE,
                        match,
                        min(hit_ids, default=0),
                        max(hit_ids, default=0),
                        *hit_ids,
                    ),
                ).fetchall()
            )
        results = []
        for message_id, score in hits:
            conversation_id, role, created_ms, title = details[message_id]
            results.append(
                SearchHit(
                    conversation_id=conversation_id,
                    conversation_title=title,
                    message_id=message_id,
                    role=role,
                    created=_to_datetime(created_ms),
                    snippet=" ".join(snippets.get(message_id, "").split()),
                    score=float(score),
                )
            )
        return results

    def count_matches(self, text: str) -> int:
        """How many messages (in live conversations) contain all the words of ``text``."""
        match = fts_query(text)
        if match is None:
            return 0
        rows = self._read(
            "SELECT count(*) FROM messages_fts JOIN messages AS m ON m.id = messages_fts.rowid "
            "JOIN conversations AS c ON c.id = m.conversation_id WHERE messages_fts MATCH ? AND c.deleted_ms IS NULL",
            (match,),
        )
        return int(rows[0][0])

    # -- export and import -------------------------------------------------------------------------------------

    def export_data(self, conversation_ids: Sequence[int] | None = None) -> dict[str, Any]:
        """One, some or all live conversations (oldest first) as plain data, ready for ``json.dumps``."""
        if conversation_ids is None:
            ids = [
                row["id"]
                for row in self._read("SELECT id FROM conversations WHERE deleted_ms IS NULL ORDER BY id")
            ]
        else:
            ids = list(conversation_ids)
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "exported": _iso(_now_ms()),
            "conversations": [self._export_conversation(i) for i in ids],
        }

    def _export_conversation(self, conversation_id: int) -> dict[str, Any]:
        conversation = self.get_conversation(conversation_id)
        return {
            "uuid": conversation.uuid,
            "title": conversation.title,
            "mode": conversation.mode,
            "model": conversation.model,
            "settings": conversation.settings,
            "created": _iso(_to_ms(conversation.created)),
            "updated": _iso(_to_ms(conversation.updated)),
            "messages": [
                {
                    "role": m.role,
                    "content": m.content,
                    "created": _iso(_to_ms(m.created)),
                    "state": m.state,
                    "prompt_tokens": m.prompt_tokens,
                    "evaluated_tokens": m.evaluated_tokens,
                    "generated_tokens": m.generated_tokens,
                    "stats": m.stats,
                }
                for m in self.messages(conversation_id)
            ],
            "documents": [
                {
                    "name": d.name,
                    "content_hash": d.content_hash,
                    "text": d.text,
                    "page_starts": d.page_starts,
                    "token_count": d.token_count,
                    "summary": d.summary,
                    "meta": d.meta,
                    "created": _iso(_to_ms(d.created)),
                }
                for d in self.documents_for(conversation_id)
            ],
        }

    def export_json(self, conversation_ids: Sequence[int] | None = None) -> str:
        return json.dumps(self.export_data(conversation_ids), ensure_ascii=False, indent=2) + "\n"

    def export_markdown(self, conversation_ids: Sequence[int] | None = None) -> str:
        data = self.export_data(conversation_ids)
        return "\n\n---\n\n".join(conversation_markdown(c) for c in data["conversations"]) + "\n"

    def import_json(self, text: str, source: str = "the file") -> ImportResult:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HistoryFormatError(
                f"{source} is not a {APP_NAME} history export (it is not valid JSON: {exc.msg}, line {exc.lineno}). "
                "Export one with: llamadesk history export --format json"
            ) from exc
        return self.import_data(data, source)

    def import_data(self, data: Any, source: str = "the data") -> ImportResult:
        """Add the conversations of an export; those already here (same uuid) are skipped, not duplicated.

        Everything is added in one transaction: a file with a bad conversation adds nothing.
        """
        conversations = _validated_export(data, source)
        result = ImportResult()
        with self._write() as connection:
            for item in conversations:
                if connection.execute(
                    "SELECT 1 FROM conversations WHERE uuid = ?", (item["uuid"],)
                ).fetchone():
                    result.skipped += 1
                    continue
                result.imported.append(self._import_conversation(connection, item, source))
        return result

    def _import_conversation(
        self, connection: sqlite3.Connection, item: Mapping[str, Any], source: str
    ) -> int:
        try:
            cursor = connection.execute(
                "INSERT INTO conversations (uuid, title, mode, model, settings, created_ms, updated_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    item["uuid"],
                    _one_line(str(item.get("title", ""))),
                    str(item.get("mode", "chat")),
                    str(item.get("model", "")),
                    _dump(dict(item.get("settings") or {})),
                    _parse_ms(item["created"], source),
                    _parse_ms(item["updated"], source),
                ),
            )
            conversation_id = _row_id(cursor)
            rows = []
            for m in item.get("messages", []):
                state = m.get("state", "complete")
                # A reply that was streaming when exported can no longer finish.
                state = "interrupted" if state == "streaming" else state
                if m["role"] not in ROLES or state not in MESSAGE_STATES:
                    raise KeyError("role" if m["role"] not in ROLES else "state")
                rows.append(
                    (
                        conversation_id,
                        m["role"],
                        str(m["content"]),
                        _parse_ms(m["created"], source),
                        state,
                        *_token_counts(m),  # the export keeps them beside the stats, under the same names
                        _dump_optional(m.get("stats")),
                    )
                )
            connection.executemany(
                "INSERT INTO messages (conversation_id, role, content, created_ms, state, prompt_tokens, "
                "evaluated_tokens, generated_tokens, stats) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            for d in item.get("documents", []):
                self._insert_document(
                    connection,
                    conversation_id,
                    str(d["name"]),
                    str(d["content_hash"]),
                    str(d.get("text", "")),
                    [int(start) for start in d.get("page_starts", [])],
                    _int_or_none(d.get("token_count")),
                    d.get("summary") if isinstance(d.get("summary"), str) else None,
                    d.get("meta"),
                    _parse_ms(d["created"], source),
                )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise HistoryFormatError(
                f"{source} has a conversation ({item.get('title') or item.get('uuid')!s}) with a missing or invalid "
                f"field ({exc}); nothing was imported. Export the history again and import that file."
            ) from exc
        return conversation_id


# -- the streaming reply ------------------------------------------------------------------------------------


class ReplyRecorder:
    """Records a reply as it streams, so a crash loses at most the last second of it.

    The row is created by the first non-empty ``append`` (so an empty start leaves no empty message), rewritten
    when ``flush_interval`` seconds have passed since the last write, and finalized by ``finish``. Used as a
    context manager, an exception marks the reply interrupted; leaving the block without ``finish`` completes it.
    """

    def __init__(
        self,
        store: HistoryStore,
        conversation_id: int,
        *,
        role: str = "assistant",
        flush_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.conversation_id = conversation_id
        self.role = role
        self.flush_interval = flush_interval
        self._clock = clock
        self.text = ""
        self.saved_text = ""  # what is on disk now
        self.message_id: int | None = None
        self.writes = 0
        self.finished = False
        self._last_write = 0.0

    def append(self, piece: str) -> None:
        if self.finished:
            raise RuntimeError("append() after finish()")
        if not piece:
            return
        self.text += piece
        now = self._clock()
        if self.message_id is None:
            self.message_id = self.store._start_streaming(self.conversation_id, self.role, self.text)
            self._written(now)
        elif now - self._last_write >= self.flush_interval:
            self.store._save_streaming(self.message_id, self.text)
            self._written(now)

    def flush(self) -> None:
        """Write what has arrived now, whatever the time since the last write."""
        if self.finished or self.text == self.saved_text:
            return
        if self.message_id is None:
            self.message_id = self.store._start_streaming(self.conversation_id, self.role, self.text)
        else:
            self.store._save_streaming(self.message_id, self.text)
        self._written(self._clock())

    def _written(self, now: float) -> None:
        self._last_write = now
        self.saved_text = self.text
        self.writes += 1

    def finish(
        self, state: FinalState = "complete", stats: Mapping[str, Any] | None = None
    ) -> Message | None:
        """Store the whole reply with its final state and stats. None when nothing was ever said and no row
        was made (a reply stopped before its first word)."""
        if self.finished:
            raise RuntimeError("finish() called twice")
        self.finished = True
        if self.message_id is None:
            if not self.text and state != "complete":
                return None
            self.message_id = self.store._start_streaming(self.conversation_id, self.role, self.text)
        self.store._finish_streaming(self.message_id, self.text, state, stats)
        self.saved_text = self.text
        self.writes += 1
        return self.store.get_message(self.message_id)

    def __enter__(self) -> ReplyRecorder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if not self.finished:
            self.finish("interrupted" if error is not None else "complete")


# -- Markdown ----------------------------------------------------------------------------------------------

_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}
_STATE_NOTES = {
    "stopped": " (stopped)",
    "interrupted": " (interrupted)",
    "streaming": " (still being written)",
}


def _local(iso_text: str) -> str:
    return datetime.fromisoformat(iso_text).astimezone().strftime("%Y-%m-%d %H:%M")


def conversation_markdown(conversation: Mapping[str, Any]) -> str:
    """One exported conversation (an item of ``export_data()["conversations"]``) as Markdown."""
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


# -- rows ---------------------------------------------------------------------------------------------------

_CONVERSATION_COLUMNS = "id, uuid, title, mode, model, settings, created_ms, updated_ms, deleted_ms"
_MESSAGE_COLUMNS = "id, conversation_id, role, content, created_ms, state, prompt_tokens, evaluated_tokens, generated_tokens, stats"
_DOCUMENT_COLUMNS = (
    "id, conversation_id, name, content_hash, text, page_starts, token_count, summary, meta, created_ms"
)


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"],
        uuid=row["uuid"],
        title=row["title"],
        mode=row["mode"],
        model=row["model"],
        settings=_load_dict(row["settings"]),
        created=_to_datetime(row["created_ms"]),
        updated=_to_datetime(row["updated_ms"]),
        deleted=None if row["deleted_ms"] is None else _to_datetime(row["deleted_ms"]),
    )


def _message(row: sqlite3.Row) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        role=row["role"],
        content=row["content"],
        created=_to_datetime(row["created_ms"]),
        state=row["state"],
        prompt_tokens=row["prompt_tokens"],
        evaluated_tokens=row["evaluated_tokens"],
        generated_tokens=row["generated_tokens"],
        stats=None if row["stats"] is None else _load_dict(row["stats"]),
    )


def _document(row: sqlite3.Row) -> Document:
    starts = json.loads(row["page_starts"])
    return Document(
        id=row["id"],
        conversation_id=row["conversation_id"],
        name=row["name"],
        content_hash=row["content_hash"],
        text=row["text"],
        page_starts=[int(s) for s in starts] if isinstance(starts, list) else [],
        token_count=row["token_count"],
        summary=row["summary"],
        meta=_load_dict(row["meta"]),
        created=_to_datetime(row["created_ms"]),
    )


def _load_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _dump_optional(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else _dump(dict(value))


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _token_counts(stats: Mapping[str, Any] | None) -> tuple[int | None, int | None, int | None]:
    stats = stats or {}
    return (
        _int_or_none(stats.get("prompt_tokens")),
        _int_or_none(stats.get("evaluated_tokens")),
        _int_or_none(stats.get("generated_tokens")),
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _row_id(cursor: sqlite3.Cursor) -> int:
    if cursor.lastrowid is None:
        raise RuntimeError("INSERT returned no row id")
    return cursor.lastrowid


def _parse_ms(value: Any, source: str) -> int:
    if not isinstance(value, str):
        raise ValueError(f"a time must be ISO 8601 text, not {value!r}")
    return _to_ms(datetime.fromisoformat(value))


def _validated_export(data: Any, source: str) -> list[dict[str, Any]]:
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


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        # Also when COMMIT itself failed (a full disk): an open transaction would block every later write.
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
