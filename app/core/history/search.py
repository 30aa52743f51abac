"""Finding things in the history: user text turned into a safe FTS5 query (``fts_query``), the ranked message
search with marked snippets, and the conversation list, filtered as the user types.

The index is ``messages_fts`` (external content over ``messages``, kept in step by triggers; see ``schema``).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from app.core.history.records import ConversationSummary, SearchHit, group_starts, label_for, to_datetime

SNIPPET_OPEN, SNIPPET_CLOSE = "«", "»"
# Ranking or grouping a match costs microseconds, and a common word matches a large part of a big history:
# queries look at the newest MATCH_WINDOW matching messages, which keeps a common word as quick as a rare one.
# For such a word the recent messages are the likelier target anyway; a rarer word is searched in full.
MATCH_WINDOW = 2000
# A one-letter prefix matches hundreds of words: filtering as the user types starts at the second letter.
PREFIX_MIN_LENGTH = 2


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


def conversation_filter(query: str | None) -> tuple[str, list[Any]]:
    """The WHERE clause (over ``conversations``) and its parameters that keep the live conversations whose
    title contains ``query`` or that have a message matching all its words (the last as a prefix; the newest
    ``MATCH_WINDOW`` matching messages)."""
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


def list_matching_conversations(
    connection: sqlite3.Connection,
    query: str | None,
    *,
    limit: int | None = None,
    offset: int = 0,
    now: datetime | None = None,
) -> list[ConversationSummary]:
    """Live conversations (all, or those ``conversation_filter`` keeps for ``query``), most recently updated
    first, each with its group label as of ``now``."""
    where, parameters = conversation_filter(query)
    sql = (
        "SELECT id, title, mode, updated_ms, model FROM conversations "
        f"WHERE {where} ORDER BY updated_ms DESC, id DESC LIMIT ? OFFSET ?"
    )
    # Plain tuples, not sqlite3.Row: this list can be 10,000 rows long and is redrawn as the user types.
    rows = connection.execute(sql, (*parameters, -1 if limit is None else limit, offset)).fetchall()
    starts = group_starts(now or datetime.now())
    return [
        ConversationSummary(conversation_id, title, mode, updated_ms, label_for(updated_ms, starts), model)
        for conversation_id, title, mode, updated_ms, model in rows
    ]


def count_matching_conversations(connection: sqlite3.Connection, query: str | None) -> int:
    where, parameters = conversation_filter(query)
    return int(
        connection.execute(f"SELECT count(*) FROM conversations WHERE {where}", parameters).fetchone()[0]
    )


def search_messages(connection: sqlite3.Connection, text: str, limit: int) -> list[SearchHit]:
    """Messages of live conversations containing all the words of ``text``, best match first (bm25), with a
    marked snippet. A query found in more than ``MATCH_WINDOW`` messages is ranked among its newest ones."""
    match = fts_query(text)
    if match is None or limit <= 0:
        return []
    oldest_ranked = connection.execute(
        "SELECT min(rowid) FROM (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? "
        "ORDER BY rowid DESC LIMIT ?)",
        (match, MATCH_WINDOW),
    ).fetchone()[0]
    if oldest_ranked is None:
        return []
    # Ranked in the search index alone, then trashed conversations left out: joining every candidate to its
    # conversation before the sort would cost more than the ranking itself. Trashed hits are few, so asking
    # for a few more than needed nearly always suffices; if not, ask for more.
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
    # "+rowid" keeps the list away from FTS5, which would restart the query once per value; one pass over the
    # hits' rowid range, filtered by SQLite, costs a tenth of that.
    hit_ids = [message_id for message_id, _score in hits]
    placeholders = ", ".join("?" * len(hit_ids))
    snippets = dict(
        connection.execute(
            "SELECT rowid, snippet(messages_fts, 0, ?, ?, '…', 12) FROM messages_fts "
            f"WHERE messages_fts MATCH ? AND rowid BETWEEN ? AND ? AND +rowid IN ({placeholders})",
            (SNIPPET_OPEN, SNIPPET_CLOSE, match, min(hit_ids, default=0), max(hit_ids, default=0), *hit_ids),
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
                created=to_datetime(created_ms),
                snippet=" ".join(snippets.get(message_id, "").split()),
                score=float(score),
            )
        )
    return results


def count_matching_messages(connection: sqlite3.Connection, text: str) -> int:
    """How many messages (in live conversations) contain all the words of ``text``."""
    match = fts_query(text)
    if match is None:
        return 0
    row = connection.execute(
        "SELECT count(*) FROM messages_fts JOIN messages AS m ON m.id = messages_fts.rowid "
        "JOIN conversations AS c ON c.id = m.conversation_id WHERE messages_fts MATCH ? AND c.deleted_ms IS NULL",
        (match,),
    ).fetchone()
    return int(row[0])
