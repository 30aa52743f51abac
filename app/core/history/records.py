"""The history's plain records (conversations, messages, attached documents, search hits), how a database row
becomes one, and the small rules they share: times in unix milliseconds, titles, and the day groups of the list.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NamedTuple

from app.core.modes import Mode

log = logging.getLogger(__name__)

MessageState = Literal["complete", "stopped", "interrupted", "streaming"]
FinalState = Literal["complete", "stopped", "interrupted"]
MESSAGE_STATES: tuple[MessageState, ...] = ("complete", "stopped", "interrupted", "streaming")
ROLES = ("system", "user", "assistant")
MODES = tuple(mode.value for mode in Mode)
TITLE_LENGTH = 60


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
    current_leaf_id: int | None = None  # the newest message of the branch on screen (None: no message yet)

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
    # The model last used in it (a file's path, or a remote server's name); "" if none was recorded.
    model: str = ""

    @property
    def updated(self) -> datetime:
        return to_datetime(self.updated_ms)

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
    parent_id: int | None = None  # the message this one answers or follows; None for a conversation's first


@dataclass(frozen=True)
class BranchPosition:
    """Where a message stands among its versions (the messages with the same parent): "< 2/3 >"."""

    sibling_ids: tuple[int, ...]  # oldest first; the message itself among them
    index: int  # of the message in ``sibling_ids``, from 0

    @property
    def count(self) -> int:
        return len(self.sibling_ids)


@dataclass(frozen=True)
class StoredDocument:
    """A document attached to a conversation, as stored: its text once, its layout, and its summary.

    ``layout`` is ``Document.to_dict()`` (where each section lies in ``text``, without the text); None for a
    document stored without one. ``HistoryStore.attached_documents`` turns the two back into a ``Document``.
    """

    id: int
    conversation_id: int
    name: str
    content_hash: str  # the document's, to recognize the same document attached again
    text: str
    layout: dict[str, Any] | None
    token_count: int | None
    summary: str | None
    meta: dict[str, Any]
    created: datetime


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
    refused: list[str] = field(default_factory=list)  # a sentence for each conversation not imported


# -- time --------------------------------------------------------------------------------------------------


# The times a history holds, in unix ms: 1970-01-01 to 2200-01-01. Python's datetime reaches year 1 and 9999,
# but a time near either end overflows when turned to local time, which every listing does.
EARLIEST_MS = 0
LATEST_MS = 7_258_118_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_datetime(ms: int) -> datetime:
    """A stored time; one out of range or not a number (a file written by hand or by a bug) is clamped into
    range with a log line, so that one bad row never stops the list, a show or an export."""
    try:
        clamped = min(max(int(ms), EARLIEST_MS), LATEST_MS)
    except (TypeError, ValueError, OverflowError):
        clamped = EARLIEST_MS
    if clamped != ms:
        log.warning("A stored time (%r) is out of range; it is shown as %s.", ms, iso_time(clamped))
    return datetime.fromtimestamp(clamped / 1000, tz=timezone.utc)


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a naive time is the computer's local time
    return round(moment.timestamp() * 1000)


def iso_time(ms: int) -> str:
    return to_datetime(ms).isoformat(timespec="milliseconds")


# Control characters a terminal acts on (ESC starts colour, title and hyperlink sequences; BEL, CR, DEL; the
# C1 range, which some terminals read as ESC-sequences too). Shown as visible symbols instead.
_CONTROLS_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode control pictures: ␛ for ESC, ␇ for BEL
    return "\u2421" if code == 0x7F else "\ufffd"


def printable_text(text: str) -> str:
    """``text`` safe to write to a terminal or a plain-text file: newlines and tabs kept, other control
    characters shown as symbols."""
    return _CONTROLS_BUT_LINES.sub(_visible, text.replace("\r\n", "\n"))


def printable_line(text: str) -> str:
    """``text`` safe to write to a terminal as part of one line: every control character shown as a symbol."""
    return _CONTROLS.sub(_visible, text)


def group_label(updated: datetime, now: datetime) -> str:
    """The heading a conversation is listed under (Today, Yesterday, Previous 7 days, Older), by calendar
    day in ``now``'s time zone; a naive ``now`` is the computer's local time."""
    return label_for(to_ms(updated), group_starts(now))


def group_starts(now: datetime) -> tuple[int, int, int]:
    """When today, yesterday and the previous 7 days began (unix ms): computed once for a whole list."""

    def midnight(days_back: int) -> int:
        day = now.date() - timedelta(days=days_back)
        start = datetime(day.year, day.month, day.day, tzinfo=now.tzinfo)
        return to_ms(start)  # naive: local time with its own daylight-saving offset on that day

    return midnight(0), midnight(1), midnight(7)


def label_for(updated_ms: int, starts: tuple[int, int, int]) -> str:
    today, yesterday, week = starts
    if updated_ms >= today:  # also a "future" time from a clock set back: it is the newest
        return "Today"
    if updated_ms >= yesterday:
        return "Yesterday"
    if updated_ms >= week:
        return "Previous 7 days"
    return "Older"


# -- text --------------------------------------------------------------------------------------------------


def auto_title(text: str, limit: int = TITLE_LENGTH) -> str:
    """A conversation's title from its first message: one line, cut at a word, at most ``limit`` characters."""
    line = one_line(text)
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:-") + "…"


def one_line(text: str) -> str:
    return " ".join(text.split())


def load_dict(text: str | None) -> dict[str, Any]:
    """A JSON object from the database; {} for anything else (a damaged or hand-edited value)."""
    try:
        value = json.loads(text) if text is not None else None
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def dump_optional(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else dump_json(dict(value))


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def token_counts(stats: Mapping[str, Any] | None) -> tuple[int | None, int | None, int | None]:
    """The counts a message keeps in their own columns, taken from its stats (or its exported form)."""
    stats = stats or {}
    return (
        int_or_none(stats.get("prompt_tokens")),
        int_or_none(stats.get("evaluated_tokens")),
        int_or_none(stats.get("generated_tokens")),
    )


def row_id(cursor: sqlite3.Cursor) -> int:
    """The id an INSERT gave its row."""
    if cursor.lastrowid is None:
        raise RuntimeError("INSERT returned no row id")
    return cursor.lastrowid


# -- rows --------------------------------------------------------------------------------------------------

CONVERSATION_COLUMNS = (
    "id, uuid, title, mode, model, settings, created_ms, updated_ms, deleted_ms, current_leaf_id"
)
MESSAGE_COLUMNS = (
    "id, conversation_id, role, content, created_ms, state, prompt_tokens, evaluated_tokens, generated_tokens, "
    "stats, parent_id"
)
DOCUMENT_COLUMNS = (
    "id, conversation_id, name, content_hash, text, layout, token_count, summary, meta, created_ms"
)


def known_mode(mode: Any) -> str:
    """A stored mode; an unknown one (written by hand, or by a newer version) opens as a chat."""
    if mode in MODES:
        return str(mode)
    log.warning("A conversation's mode %r is unknown; it opens as chat.", mode)
    return Mode.CHAT.value


def conversation_from_row(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"],
        uuid=row["uuid"],
        title=row["title"],
        mode=known_mode(row["mode"]),
        model=row["model"],
        settings=load_dict(row["settings"]),
        created=to_datetime(row["created_ms"]),
        updated=to_datetime(row["updated_ms"]),
        deleted=None if row["deleted_ms"] is None else to_datetime(row["deleted_ms"]),
        current_leaf_id=row["current_leaf_id"],
    )


def message_from_row(row: sqlite3.Row) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        role=row["role"],
        content=row["content"],
        created=to_datetime(row["created_ms"]),
        state=row["state"],
        prompt_tokens=row["prompt_tokens"],
        evaluated_tokens=row["evaluated_tokens"],
        generated_tokens=row["generated_tokens"],
        stats=None if row["stats"] is None else load_dict(row["stats"]),
        parent_id=row["parent_id"],
    )


def stored_document_from_row(row: sqlite3.Row) -> StoredDocument:
    return StoredDocument(
        id=row["id"],
        conversation_id=row["conversation_id"],
        name=row["name"],
        content_hash=row["content_hash"],
        text=row["text"],
        layout=None if row["layout"] is None else load_dict(row["layout"]),
        token_count=row["token_count"],
        summary=row["summary"],
        meta=load_dict(row["meta"]),
        created=to_datetime(row["created_ms"]),
    )
