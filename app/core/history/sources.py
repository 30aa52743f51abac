"""The sources of a reply: the document passages the model was given for it, stored with the reply.

A reply about attached documents is only as trustworthy as what it was based on, so the passages themselves are
kept (their text, not a pointer into a document that may be detached later), each with its document's name and
its page or section, in the order the model read them. They are shown under the reply when the conversation is
reopened and listed in its Markdown export. Their table, ``reply_sources``, is made by migration
0007_reply_sources (``schema``); a reply's sources go when the reply is deleted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReplySource:
    """One passage given to the model with the question."""

    document_name: str
    label: str  # "page 3", 'section "Results"', "lines 1-40"
    page: int | None
    text: str

    @property
    def reference(self) -> str:
        """What a person reads: "report.pdf, page 3"."""
        return f"{self.document_name}, {self.label}"

    def to_dict(self) -> dict[str, Any]:
        return {"document": self.document_name, "label": self.label, "page": self.page, "text": self.text}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplySource:
        """Raises KeyError, TypeError or ValueError for data not written by ``to_dict``."""
        page = data.get("page")
        if page is not None and (not isinstance(page, int) or isinstance(page, bool)):
            raise TypeError("a source's page must be a whole number")
        values = (data["document"], data["label"], data["text"])
        if not all(isinstance(value, str) for value in values):
            raise TypeError("a source's document, label and text must be text")
        return cls(str(data["document"]), str(data["label"]), page, str(data["text"]))


def insert_sources(connection: sqlite3.Connection, message_id: int, sources: Sequence[ReplySource]) -> None:
    """Replace the sources of ``message_id`` with ``sources``, inside an open transaction."""
    connection.execute("DELETE FROM reply_sources WHERE message_id = ?", (message_id,))
    connection.executemany(
        "INSERT INTO reply_sources (message_id, position, document_name, label, page, text) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (message_id, position, source.document_name, source.label, source.page, source.text)
            for position, source in enumerate(sources)
        ],
    )


# SQLite allows 999 parameters in one statement on older builds; asking in batches stays under it.
_BATCH = 500


def select_sources(
    connection: sqlite3.Connection, message_ids: Iterable[int]
) -> dict[int, list[ReplySource]]:
    """The sources of each of ``message_ids`` that has any, in the order the model read them."""
    ids = list(dict.fromkeys(message_ids))
    found: dict[int, list[ReplySource]] = {}
    for start in range(0, len(ids), _BATCH):
        batch = ids[start : start + _BATCH]
        marks = ", ".join("?" * len(batch))
        rows = connection.execute(
            "SELECT message_id, document_name, label, page, text FROM reply_sources "
            f"WHERE message_id IN ({marks}) ORDER BY message_id, position",
            batch,
        )
        for message_id, name, label, page, text in rows:
            found.setdefault(int(message_id), []).append(
                ReplySource(name, label, page if isinstance(page, int) else None, text)
            )
    return found
