"""The sources of a reply: the document passages the model was given for it, stored with the reply.

A reply about attached documents is only as trustworthy as what it was based on, so the passages themselves are
kept (their text, not a pointer into a document that may be detached later), each with its document's name and
its page or section, best match first (those stored before sources were ranked: in reading order). They
are shown under the reply when the conversation is reopened and listed in its Markdown export. Their table,
``reply_sources``, is made by migration 0007_reply_sources (``schema``); a reply's sources go when the reply is
deleted.

Shown, the passages of one page are one source (``group_sources``), the sentence that matched the question is
marked (``retrieval.matched_sentences``, with the question the reply answered), and the file can be opened at
that page (``open_plan``): the question and an attached document's path are looked up when the sources are
read, not stored twice; a library's file, which the conversation never attached, keeps its path with the source
(migration 0009_source_paths).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.documents.reader import document_kind


@dataclass(frozen=True)
class ReplySource:
    """One passage given to the model with the question."""

    document_name: str
    label: str  # "page 3", 'section "Results"', "lines 1-40"
    page: int | None
    text: str
    # Not part of the passage: the question it was found for and the file it came from ("" when not known),
    # from the conversation around it, for showing it. Two sources are the same passage whatever these say.
    question: str = field(default="", compare=False)
    path: str = field(default="", compare=False)

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
        "INSERT INTO reply_sources (message_id, position, document_name, label, page, text, path) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                message_id,
                position,
                source.document_name,
                source.label,
                source.page,
                source.text,
                source.path or None,
            )
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
        # The question is the reply's parent message; the path is in the layout of the conversation's newest
        # document of that name (json_valid first: a damaged layout must not make the sources unreadable).
        rows = connection.execute(
            "SELECT s.message_id, s.document_name, s.label, s.page, s.text, question.content, coalesce(s.path, ("
            "  SELECT json_extract(d.layout, '$.path') FROM documents AS d"
            "  WHERE d.conversation_id = reply.conversation_id AND d.name = s.document_name"
            "  AND json_valid(d.layout) ORDER BY d.id DESC LIMIT 1"
            ")) FROM reply_sources AS s JOIN messages AS reply ON reply.id = s.message_id "
            "LEFT JOIN messages AS question ON question.id = reply.parent_id AND question.role = 'user' "
            f"WHERE s.message_id IN ({marks}) ORDER BY s.message_id, s.position",
            batch,
        )
        for message_id, name, label, page, text, question, path in rows:
            found.setdefault(int(message_id), []).append(
                ReplySource(
                    name,
                    label,
                    page if isinstance(page, int) else None,
                    text,
                    question=question if isinstance(question, str) else "",
                    path=path if isinstance(path, str) else "",
                )
            )
    return found


@dataclass(frozen=True)
class SourceGroup:
    """The passages of one page (or section) of one document among a reply's sources: one source to a person."""

    document_name: str
    label: str
    page: int | None
    path: str  # "" when not known
    passages: tuple[ReplySource, ...]

    @property
    def reference(self) -> str:
        return f"{self.document_name}, {self.label}"

    @property
    def text(self) -> str:
        """The passages as one text, a paragraph each: what is shown, and where the matching sentences are
        looked for (the best of the page, not one per passage)."""
        return "\n\n".join(source.text for source in self.passages)

    @property
    def question(self) -> str:
        """The question the passages were found for ("" when not known)."""
        return next((source.question for source in self.passages if source.question), "")


def group_sources(sources: Sequence[ReplySource]) -> list[SourceGroup]:
    """``sources`` as a person reads them: one group per document page or section, in the order of each
    group's first passage (for a new reply, its best match first), each with its passages in their order."""
    groups: dict[tuple[str, str], list[ReplySource]] = {}
    for source in sources:
        groups.setdefault((source.document_name, source.label), []).append(source)
    return [
        SourceGroup(
            name,
            label,
            passages[0].page,
            next((p.path for p in passages if p.path), ""),
            tuple(passages),
        )
        for (name, label), passages in groups.items()
    ]


# What a viewer is given: these kinds of file are opened as documents. A program's source (.py, .sh, .bat, ...) is
# not: the system's "open" runs some of them (Windows runs a .bat or a .ps1 it is asked to open), so for those,
# and for files of no known kind, the folder holding the file is opened instead.
_VIEWABLE_KINDS = frozenset({"pdf", "docx", "markdown", "rest", "html", "text"})


@dataclass(frozen=True)
class OpenPlan:
    """What clicking "open" on a source does: ``problem`` (a sentence) when nothing can be opened, else open
    ``path`` (a file, or the folder holding it when ``folder``), at ``page`` for a PDF viewer."""

    path: str
    page: int | None
    folder: bool
    description: str  # for a tooltip: what will happen
    problem: str | None = None


def open_plan(group: SourceGroup) -> OpenPlan:
    """How to show ``group``'s file in the system's viewer, checked against the disk now."""
    name = group.document_name
    if not group.path:
        return OpenPlan(
            "",
            None,
            False,
            "",
            f"Where {name} is on disk is not known (it was pasted, or is no longer attached to this "
            "conversation), so it cannot be opened. Its passages are shown here.",
        )
    file = Path(group.path)
    if not file.is_file():
        return OpenPlan(
            group.path,
            None,
            False,
            "",
            f"{name} is no longer at {group.path}: it may have been moved, renamed or deleted. Attach it again "
            "from where it is now to open it from its sources.",
        )
    kind = document_kind(file) if file.suffix else None
    if kind not in _VIEWABLE_KINDS:
        return OpenPlan(
            os.fspath(file.parent),
            None,
            True,
            f"Opens the folder holding {name}. Program files are not opened directly, as opening some of "
            "them would run them.",
        )
    if kind == "pdf" and group.page is not None:
        return OpenPlan(
            group.path,
            group.page,
            False,
            f"Opens {name} in your PDF viewer at {group.label}. Viewers that do not follow page links open it "
            "at its first page.",
        )
    return OpenPlan(group.path, None, False, f"Opens {name} in the program your system uses for it.")
