"""``HistoryStore``: the conversations, their messages and attached documents, and the trash, in one SQLite file
whose connection the store owns.

What keeps history from being lost (the failures users of other apps reported, see PEERS.md):

- Every message is its own committed transaction. A user message is stored before the model is asked; a reply
  is saved while it streams (``recorder.ReplyRecorder``), so a killed process loses at most its last second.
- The file is opened safely (``database``, ``schema``): checked, backed up before a migration, migrated by
  named steps, a newer file refused, a damaged one moved aside; commits are durable through a power cut.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
import uuid as uuid_module
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any

from app.core.documents.document import Document
from app.core.errors import UserError
from app.core.history.attachments import DocumentRow, insert_document, rebuilt_document
from app.core.history.branches import (
    BRANCH_IDS,
    BRANCH_PAGE_IDS,
    current_leaf,
    positions,
    remember_branch,
    remove_from_tree,
    set_current_leaf,
    viewed_leaf_below,
)
from app.core.history.database import open_database, release_database
from app.core.history.errors import (
    HistoryFormatError,
    HistoryReadOnlyError,
    HistoryWriteError,
    conversation_not_found,
    storage_error,
)
from app.core.history.export import (
    SHOWN_ON_SCREEN,
    conversation_export,
    export_envelope,
    json_text,
    markdown,
)
from app.core.history.imports import (
    ImportedConversation,
    insert_imported,
    parse_conversation,
    parse_export_json,
    validated_export,
)
from app.core.history.recorder import ReplyRecorder
from app.core.history.records import (
    CONVERSATION_COLUMNS,
    DOCUMENT_COLUMNS,
    MESSAGE_COLUMNS,
    ROLES,
    BranchPosition,
    Conversation,
    ConversationSummary,
    FinalState,
    ImportResult,
    Message,
    MessageState,
    SearchHit,
    StoredDocument,
    auto_title,
    conversation_from_row,
    dump_json,
    dump_optional,
    message_from_row,
    now_ms,
    one_line,
    row_id,
    stored_document_from_row,
    token_counts,
)
from app.core.history.schema import transaction
from app.core.history.search import (
    count_matching_conversations,
    count_matching_messages,
    list_matching_conversations,
    search_messages,
)
from app.core.history.sources import ReplySource, insert_sources, select_sources
from app.core.paths import app_paths

if TYPE_CHECKING:
    from app.core.llm.context import ChatMessage

log = logging.getLogger(__name__)

# A large import commits in batches and pauses between them, so that another process's write (the window
# storing a message) waits at most about a batch. SQLite's busy handler retries a waiting write every 100 ms at
# its slowest, so a pause longer than that is always long enough for it to get in.
IMPORT_BATCH_SIZE = 500
IMPORT_BATCH_SECONDS = 1.0
IMPORT_PAUSE_SECONDS = 0.12


class HistoryStore:
    """All conversations, messages and attached documents. Opening it migrates, repairs and recovers.

    A store is one SQLite connection, owned by the thread that opened the store: every call comes from that
    thread (the CLI's main thread, the window's GUI thread), and a call from another one raises
    ``sqlite3.ProgrammingError``. Work on another thread opens its own ``HistoryStore`` on the same file: WAL
    lets the two read while one writes, a write waits its turn, and opening a file this process already has
    open is cheap (no check, backup or migration) and leaves the other store's streaming reply alone.
    """

    def __init__(self, path: Path | None = None) -> None:
        default = path is None
        self.path = app_paths().history_db if path is None else Path(path)
        opened = open_database(self.path, enforce_private_folder=default)
        self._connection = opened.connection
        # A sentence for the user: a damaged file was moved aside, or the history is open read-only.
        self.recovery_notice = opened.recovery_notice
        # The file or its folder cannot be written: reading works, every write raises HistoryReadOnlyError.
        self.read_only = opened.read_only
        self.backup_path = opened.backup_path  # the copy taken before migrating, if one was needed
        self._release = weakref.finalize(self, release_database, opened.key)

    def close(self) -> None:
        if not self._release.alive:  # closed already
            return
        with contextlib.suppress(sqlite3.OperationalError):
            self._connection.execute("PRAGMA optimize")
        self._connection.close()
        self._release()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise HistoryReadOnlyError(
                f"This was not saved: the conversation history at {self.path} is open read-only (it cannot be "
                "written). Chatting still works, but new messages will not be kept."
            )
        try:
            with transaction(self._connection):
                yield self._connection
        except sqlite3.OperationalError as exc:
            # Disk full, locked, I/O error: the environment's fault, so a sentence, not a traceback.
            raise storage_error(exc, "saved") from exc

    def _read(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        try:
            cursor = self._connection.execute(sql, parameters)
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()
        except sqlite3.OperationalError as exc:
            raise storage_error(exc, "read") from exc

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
        now = now_ms()
        with self._write() as connection:
            cursor = connection.execute(
                "INSERT INTO conversations (uuid, title, mode, model, settings, created_ms, updated_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(uuid_module.uuid4()), one_line(title), mode, model, dump_json(settings or {}), now, now),
            )
            conversation_id = row_id(cursor)
        return self.get_conversation(conversation_id)

    def get_conversation(self, conversation_id: int) -> Conversation:
        rows = self._read(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)
        )
        if not rows:
            raise conversation_not_found(conversation_id)
        return conversation_from_row(rows[0])

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
            changes["settings"] = dump_json(settings)
        if not changes:
            return
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._write() as connection:
            self._require(connection, conversation_id)
            connection.execute(
                f"UPDATE conversations SET {assignments} WHERE id = ?", (*changes.values(), conversation_id)
            )

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        line = one_line(title)
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
                (now_ms(), conversation_id),
            )

    def restore_conversation(self, conversation_id: int) -> None:
        with self._write() as connection:
            self._require(connection, conversation_id)
            connection.execute("UPDATE conversations SET deleted_ms = NULL WHERE id = ?", (conversation_id,))

    def purge_trash(self, older_than: timedelta = timedelta(0)) -> int:
        """Delete for good what has been in the trash longer than ``older_than``; returns how many."""
        cutoff = now_ms() - int(older_than.total_seconds() * 1000)
        with self._write() as connection:
            return connection.execute(
                "DELETE FROM conversations WHERE deleted_ms IS NOT NULL AND deleted_ms <= ?", (cutoff,)
            ).rowcount

    def list_trash(self) -> list[Conversation]:
        rows = self._read(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE deleted_ms IS NOT NULL "
            "ORDER BY deleted_ms DESC"
        )
        return [conversation_from_row(row) for row in rows]

    def list_conversations(
        self,
        query: str | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        now: datetime | None = None,
    ) -> list[ConversationSummary]:
        """Live conversations, most recently updated first, each with its group label; ``query`` keeps those
        it finds as the user types (see ``search.conversation_filter``)."""
        return list_matching_conversations(self._connection, query, limit=limit, offset=offset, now=now)

    def count_conversations(self, query: str | None = None) -> int:
        try:
            return count_matching_conversations(self._connection, query)
        except sqlite3.OperationalError as exc:
            raise storage_error(exc, "read") from exc

    @staticmethod
    def _require(connection: sqlite3.Connection, conversation_id: int) -> None:
        if (
            connection.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            is None
        ):
            raise conversation_not_found(conversation_id)

    # -- messages ----------------------------------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str,
        *,
        state: MessageState = "complete",
        stats: Mapping[str, Any] | None = None,
        parent_id: int | EllipsisType | None = ...,
    ) -> Message:
        """Store one message and commit at once: a user message is safe before the model is even asked.

        It follows the branch on screen, or with ``parent_id`` that message (None: it starts the conversation),
        which makes it a new version of that message's other children (``branches``). Either way the branch on
        screen now ends with it.
        """
        with self._write() as connection:
            message_id = self._insert_message(
                connection, conversation_id, role, content, state, stats, parent_id
            )
        return self.get_message(message_id)

    def add_conversation(
        self,
        messages: Sequence[tuple[str, str]],
        reply: str,
        *,
        reply_state: FinalState = "complete",
        reply_stats: Mapping[str, Any] | None = None,
        mode: str = "chat",
        model: str = "",
        settings: Mapping[str, Any] | None = None,
    ) -> int:
        """Store a finished exchange, its ``(role, content)`` messages then the assistant's ``reply``, as a new
        conversation in one transaction, so that another connection never lists it half written (untitled, or
        without its reply). Returns its id."""
        now = now_ms()
        with self._write() as connection:
            cursor = connection.execute(
                "INSERT INTO conversations (uuid, title, mode, model, settings, created_ms, updated_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(uuid_module.uuid4()), "", mode, model, dump_json(settings or {}), now, now),
            )
            conversation_id = row_id(cursor)
            for role, content in messages:
                self._insert_message(connection, conversation_id, role, content, "complete", None)
            self._insert_message(connection, conversation_id, "assistant", reply, reply_state, reply_stats)
        return conversation_id

    def _insert_message(
        self,
        connection: sqlite3.Connection,
        conversation_id: int,
        role: str,
        content: str,
        state: MessageState,
        stats: Mapping[str, Any] | None,
        parent_id: int | EllipsisType | None = ...,
    ) -> int:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self._require(connection, conversation_id)
        parent = current_leaf(connection, conversation_id) if parent_id is ... else parent_id
        now = now_ms()
        cursor = connection.execute(
            "INSERT INTO messages (conversation_id, role, content, created_ms, state, prompt_tokens, "
            "evaluated_tokens, generated_tokens, stats, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (conversation_id, role, content, now, state, *token_counts(stats), dump_optional(stats), parent),
        )
        set_current_leaf(connection, conversation_id, row_id(cursor))
        connection.execute(
            "UPDATE conversations SET updated_ms = max(updated_ms, ?) WHERE id = ?", (now, conversation_id)
        )
        if role == "user":
            connection.execute(
                "UPDATE conversations SET title = ? WHERE id = ? AND title = ''",
                (auto_title(content), conversation_id),
            )
        return row_id(cursor)

    def get_message(self, message_id: int) -> Message:
        rows = self._read(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,))
        if not rows:
            raise UserError(f"There is no message {message_id} in the history.")
        return message_from_row(rows[0])

    def delete_message(self, message_id: int) -> None:
        """Remove one message (a question that could not be answered at all); its children, if any, move up to
        its parent."""
        with self._write() as connection:
            remove_from_tree(connection, message_id)
            connection.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    def messages(self, conversation_id: int) -> list[Message]:
        """The messages of the branch on screen, oldest first (``all_messages``: every branch)."""
        rows = self._read(
            f"{BRANCH_IDS} SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN branch ORDER BY id",
            {"conversation": conversation_id},
        )
        return [message_from_row(row) for row in rows]

    def all_messages(self, conversation_id: int) -> list[Message]:
        """Every message of every branch, oldest first (a parent always before its children)."""
        rows = self._read(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        )
        return [message_from_row(row) for row in rows]

    def branch_positions(
        self, conversation_id: int, messages: Sequence[Message]
    ) -> dict[int, BranchPosition]:
        """Where each of ``messages`` that has other versions stands among them ("< 2/3 >"), by message id."""
        try:
            return positions(self._connection, conversation_id, [(m.id, m.parent_id) for m in messages])
        except sqlite3.OperationalError as exc:
            raise storage_error(exc, "read") from exc

    def switch_branch(self, conversation_id: int, message_id: int) -> None:
        """Show the branch through ``message_id`` (a version of a message): it and the path last viewed below
        it (``branch_end_through``)."""
        with self._write() as connection:
            leaf = self._viewed_leaf_below(connection, conversation_id, message_id)
            set_current_leaf(connection, conversation_id, leaf)

    def branch_end_through(self, conversation_id: int, message_id: int) -> int:
        """The end of the branch that going to ``message_id`` shows: the path last viewed below it, or its
        newest path where nothing below it was viewed. Nothing changes (``switch_branch`` moves there)."""
        try:
            return self._viewed_leaf_below(self._connection, conversation_id, message_id)
        except sqlite3.OperationalError as exc:
            raise storage_error(exc, "read") from exc

    @staticmethod
    def _viewed_leaf_below(connection: sqlite3.Connection, conversation_id: int, message_id: int) -> int:
        row = connection.execute(
            "SELECT 1 FROM messages WHERE id = ? AND conversation_id = ?", (message_id, conversation_id)
        ).fetchone()
        if row is None:
            raise UserError(f"There is no message {message_id} in conversation {conversation_id}.")
        return viewed_leaf_below(connection, conversation_id, message_id)

    def set_branch_end(self, conversation_id: int, message_id: int | None) -> None:
        """Make the branch on screen end at ``message_id`` exactly (a reply about to be written again ends its
        branch at its question, so the new reply becomes its sibling)."""
        with self._write() as connection:
            set_current_leaf(connection, conversation_id, message_id)

    def branch_end(self, conversation_id: int) -> int | None:
        """The newest message of the branch on screen."""
        try:
            return current_leaf(self._connection, conversation_id)
        except sqlite3.OperationalError as exc:
            raise storage_error(exc, "read") from exc

    def recent_messages(
        self, conversation_id: int, limit: int, before_id: int | None = None
    ) -> list[Message]:
        """Up to ``limit`` messages of the branch on screen, oldest first, the newest of them just before
        ``before_id`` (a message of that branch; by default the newest of the branch): a long conversation is
        shown a page at a time, newest first."""
        if before_id is None:
            start = self.branch_end(conversation_id)
        else:
            above = self._read("SELECT parent_id FROM messages WHERE id = ?", (before_id,))
            start = above[0]["parent_id"] if above else None
        if start is None or limit <= 0:
            return []
        rows = self._read(
            f"{BRANCH_PAGE_IDS} SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN (SELECT id FROM page) "
            "ORDER BY id DESC",
            {"conversation": conversation_id, "start": start, "limit": limit},
        )
        return [message_from_row(row) for row in reversed(rows)]

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

    def start_streaming_message(self, conversation_id: int, role: str, content: str) -> int:
        """Create the row of a reply that is still arriving (state ``streaming``); returns its id."""
        with self._write() as connection:
            return self._insert_message(connection, conversation_id, role, content, "streaming", None)

    def save_streaming_message(self, message_id: int, content: str) -> None:
        """Rewrite a streaming reply with what has arrived so far."""
        with self._write() as connection:
            # Setting the state again undoes another process's open, which took this live reply for a dead one.
            connection.execute(
                "UPDATE messages SET content = ?, state = 'streaming' WHERE id = ?", (content, message_id)
            )

    def finish_streaming_message(
        self, message_id: int, content: str, state: FinalState, stats: Mapping[str, Any] | None
    ) -> None:
        """Store a streamed reply's whole text with its final state and stats."""
        now = now_ms()
        with self._write() as connection:
            connection.execute(
                "UPDATE messages SET content = ?, state = ?, prompt_tokens = ?, evaluated_tokens = ?, "
                "generated_tokens = ?, stats = ? WHERE id = ?",
                (content, state, *token_counts(stats), dump_optional(stats), message_id),
            )
            connection.execute(
                "UPDATE conversations SET updated_ms = max(updated_ms, ?) "
                "WHERE id = (SELECT conversation_id FROM messages WHERE id = ?)",
                (now, message_id),
            )

    # -- the sources of replies --------------------------------------------------------------------------------

    def set_reply_sources(self, message_id: int, sources: Sequence[ReplySource]) -> None:
        """Keep with a reply the document passages it was given (see ``sources``)."""
        with self._write() as connection:
            insert_sources(connection, message_id, sources)

    def reply_sources(self, message_ids: Iterable[int]) -> dict[int, list[ReplySource]]:
        """The sources of each of ``message_ids`` that has any, in the order the model read them."""
        try:
            return select_sources(self._connection, message_ids)
        except sqlite3.OperationalError as exc:
            raise storage_error(exc, "read") from exc

    # -- documents ---------------------------------------------------------------------------------------------

    def add_document(
        self,
        conversation_id: int,
        document: Document,
        *,
        token_count: int | None = None,
        summary: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> StoredDocument:
        """Attach ``document`` to a conversation (committed at once): its text, and beside it its layout
        (``Document.to_dict()``, without the text)."""
        row = DocumentRow.of(document, token_count=token_count, summary=summary, meta=meta)
        with self._write() as connection:
            self._require(connection, conversation_id)
            document_id = insert_document(connection, conversation_id, row)
        return self.get_document(document_id)

    def get_document(self, document_id: int) -> StoredDocument:
        rows = self._read(f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ?", (document_id,))
        if not rows:
            raise UserError(f"There is no attached document {document_id} in the history.")
        return stored_document_from_row(rows[0])

    def documents_for(self, conversation_id: int) -> list[StoredDocument]:
        """The documents attached to a conversation, as stored, in the order they were attached."""
        rows = self._read(
            f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        )
        return [stored_document_from_row(row) for row in rows]

    def attached_documents(self, conversation_id: int) -> list[tuple[StoredDocument, Document]]:
        """The documents attached to a conversation, each with the ``Document`` rebuilt from its text and
        layout, in the order they were attached. One stored without a layout, or whose layout does not fit its
        text, cannot be rebuilt: it is left out (and logged)."""
        attached = []
        for stored in self.documents_for(conversation_id):
            try:
                document = rebuilt_document(stored)
            except (KeyError, TypeError, ValueError):
                log.warning("document %s could not be restored", stored.id, exc_info=True)
                continue
            if document is not None:
                attached.append((stored, document))
        return attached

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
        """Messages containing all the words of ``text``, best match first, with a marked snippet (see
        ``search.search_messages``)."""
        return search_messages(self._connection, text, limit)

    def count_matches(self, text: str) -> int:
        """How many messages (in live conversations) contain all the words of ``text``."""
        try:
            return count_matching_messages(self._connection, text)
        except sqlite3.OperationalError as exc:
            raise storage_error(exc, "read") from exc

    # -- export and import -------------------------------------------------------------------------------------

    def export_data(
        self, conversation_ids: Sequence[int] | None = None, *, version: int | None = None
    ) -> dict[str, Any]:
        """One, some or all live conversations (oldest first) as plain data, ready for ``json.dumps``.

        ``version``, a message of the one conversation exported, makes the exported branch on screen the one
        going to that message shows (``branch_end_through``) instead of the branch on screen now.
        """
        if conversation_ids is None:
            rows = self._read("SELECT id FROM conversations WHERE deleted_ms IS NULL ORDER BY id")
            ids = [row["id"] for row in rows]
        else:
            ids = list(conversation_ids)
        shown_end = None
        if version is not None:
            if len(ids) != 1:
                raise UserError("A version can be exported from one conversation only: give its number too.")
            shown_end = self.branch_end_through(ids[0], version)
        return export_envelope(
            [
                conversation_export(
                    self.get_conversation(i),
                    messages := self.all_messages(i),
                    self.documents_for(i),
                    self.reply_sources(m.id for m in messages),
                    current_message=shown_end,
                )
                for i in ids
            ]
        )

    def export_json(
        self, conversation_ids: Sequence[int] | None = None, *, version: int | None = None
    ) -> str:
        return json_text(self.export_data(conversation_ids, version=version))

    def export_markdown(
        self, conversation_ids: Sequence[int] | None = None, *, version: int | None = None
    ) -> str:
        shown = "the version chosen" if version is not None else SHOWN_ON_SCREEN
        return markdown(self.export_data(conversation_ids, version=version)["conversations"], shown=shown)

    def import_json(self, text: str, source: str = "the file") -> ImportResult:
        return self.import_data(parse_export_json(text, source), source)

    def import_data(
        self,
        data: Any,
        source: str = "the data",
        *,
        batch_seconds: float = IMPORT_BATCH_SECONDS,
        batch_size: int = IMPORT_BATCH_SIZE,
    ) -> ImportResult:
        """Add the conversations of an export; those already here (same uuid) are skipped, not duplicated, and
        each one that fails its checks is refused with a sentence (``ImportResult.refused``) while the others
        are imported.

        Each conversation is added whole or not at all, in batches of at most ``batch_size`` conversations or
        ``batch_seconds`` of work, one transaction each, with a pause between them in which another process
        (the window sending a message, say) gets the write lock.
        """
        if self.read_only:
            with self._write():  # raises the read-only sentence
                pass
        result = ImportResult()
        checked: list[ImportedConversation] = []
        for number, item in enumerate(validated_export(data, source), start=1):
            try:
                checked.append(parse_conversation(item, number))
            except HistoryFormatError as exc:
                log.info("Import from %s: %s", source, exc)
                result.refused.append(str(exc))
        try:
            self._insert_in_batches(checked, result, batch_seconds, batch_size)
        except HistoryWriteError as exc:
            raise HistoryWriteError(
                f"{exc} {len(result.imported)} conversation(s) were imported before that; import the same file "
                "again to add the rest (those already imported are skipped)."
            ) from exc
        return result

    def _insert_in_batches(
        self, checked: list[ImportedConversation], result: ImportResult, batch_seconds: float, batch_size: int
    ) -> None:
        seen: set[str] = set()
        position = 0
        while position < len(checked):
            if position:
                time.sleep(IMPORT_PAUSE_SECONDS)
            started = time.monotonic()
            with self._write() as connection:
                done = 0
                while position < len(checked) and done < batch_size:
                    if done and time.monotonic() - started >= batch_seconds:
                        break
                    item = checked[position]
                    position += 1
                    done += 1
                    if (
                        item.uuid in seen
                        or connection.execute(
                            "SELECT 1 FROM conversations WHERE uuid = ?", (item.uuid,)
                        ).fetchone()
                    ):
                        result.skipped += 1
                        continue
                    seen.add(item.uuid)
                    imported = insert_imported(connection, item)
                    remember_branch(connection, imported)  # its branch on screen, as a branch viewed
                    result.imported.append(imported)
