"""A document's text in labelled sections (pages, headings, runs of lines), however it arrived.

``Document`` is what every other part works with: the reader makes one from a file, the history keeps one
(its text once, and where each section lies in it), chunking and retrieval cut it, the summarizer reads it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from app.core.errors import UserError
from app.core.units import counted

DocumentKind = Literal["pdf", "docx", "text", "markdown", "rest", "html", "code"]

# Between the sections of a document's text (empty sections are left out).
SECTION_SEPARATOR = "\n\n"
# The most text one document may hold, in tokens as ``approximate_tokens`` estimates them (about 5,000 pages of
# prose): a summary of more would take days on a laptop, and tokenizing it at all takes gigabytes.
MAX_DOCUMENT_TOKENS = 2_000_000


class DocumentError(UserError):
    """A file that cannot be read as a document; the message says why and what to do."""


@dataclass(frozen=True)
class Section:
    """A labelled part of a document: "page 3", 'section "Results"', "lines 1-120"."""

    label: str
    text: str
    page: int | None = None


@dataclass(frozen=True)
class Chunk:
    """A run of consecutive paragraphs that fits one prompt (``chunking``); ``first_section``..``last_section``
    index the document's sections it draws from."""

    index: int
    label: str
    text: str
    tokens: int
    first_section: int
    last_section: int


@dataclass(frozen=True)
class Document:
    """The text of one file, in sections that keep their page numbers or headings.

    ``content_hash`` is the sha256 of the extracted text: the same words give the same hash (and so reuse cached
    summaries) whichever file they arrived in.
    """

    name: str
    path: str
    kind: DocumentKind
    sections: list[Section]
    text: str = field(repr=False)
    content_hash: str
    size: int  # bytes of the original file
    # The document cut into passages (``chunking.cut_passages``), when the reader's child process made the cut:
    # cutting thousands of pages is pure Python that would hold the interpreter lock on the app's worker
    # threads, and the GUI thread waits for that lock. None: ``chunking.passages_of`` cuts it when asked.
    passages: tuple[Chunk, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def page_count(self) -> int | None:
        pages = [s.page for s in self.sections if s.page is not None]
        return max(pages) if pages else None

    def to_dict(self) -> dict[str, Any]:
        """The document without its text, as plain JSON-able data: each section is its label, page and where it
        lies in ``text`` (``start``/``end``, Python string offsets). The text is stored once, beside this;
        ``from_stored`` puts the two back together."""
        sections = []
        end = 0  # where the text joined so far ends
        joined_any = False
        for section in self.sections:
            start = end
            if section.text:  # join_sections leaves empty sections out, so they get an empty span
                start += len(SECTION_SEPARATOR) if joined_any else 0
                end = start + len(section.text)
                joined_any = True
            sections.append({"label": section.label, "page": section.page, "start": start, "end": end})
        return {
            "name": self.name,
            "path": self.path,
            "kind": self.kind,
            "sections": sections,
            "content_hash": self.content_hash,
            "size": self.size,
        }

    @classmethod
    def from_stored(cls, text: str, layout: Mapping[str, Any]) -> Document:
        """The document ``to_dict`` described, with its ``text``; raises KeyError, TypeError or ValueError when
        the layout does not fit the text."""
        kind = layout["kind"]
        if kind not in get_args(DocumentKind):
            raise ValueError(f"unknown document kind {kind!r}")
        sections = []
        for item in layout["sections"]:
            start, end = item["start"], item["end"]
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= len(text)):
                raise ValueError(f"section {item.get('label')!r} lies outside the text ({start}-{end})")
            page = item.get("page")
            sections.append(
                Section(str(item["label"]), text[start:end], page if isinstance(page, int) else None)
            )
        return cls(
            name=str(layout["name"]),
            path=str(layout["path"]),
            kind=kind,
            sections=sections,
            text=text,
            content_hash=str(layout["content_hash"]),
            size=int(layout["size"]),
        )


def approximate_tokens(text: str) -> int:
    """Tokens as a model would count them, without its tokenizer and in one pass in C: about four ASCII
    characters per token, and a token for each other character (CJK text is close to one token a character)."""
    non_ascii = 0 if text.isascii() else len(text) - len(text.encode("ascii", errors="ignore"))
    return max(1, (len(text) - non_ascii) // 4 + non_ascii)


def check_document_size(name: str, text: str, *, so_far: bool = False) -> None:
    """Raise DocumentError when ``text`` is over MAX_DOCUMENT_TOKENS (``so_far``: the text read up to now)."""
    tokens = approximate_tokens(text)
    if tokens > MAX_DOCUMENT_TOKENS:
        amount = f"more than {tokens:,}" if so_far else f"about {tokens:,}"
        raise DocumentError(
            f"{name} holds {amount} tokens of text, over the limit of {MAX_DOCUMENT_TOKENS:,} tokens (about "
            "5,000 pages) for one document, so it was not read. Split it into smaller files, or save only the "
            "part you need."
        )


def join_sections(sections: list[Section]) -> str:
    return SECTION_SEPARATOR.join(s.text for s in sections if s.text)


def make_document(
    name: str, kind: DocumentKind, sections: list[Section], *, path: str = "", size: int = 0
) -> Document:
    """A document from sections already in hand (the reader, pasted text, tests)."""
    text = join_sections(sections)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Document(name, path, kind, sections, text, digest, size or len(text.encode("utf-8")))


def describe(
    document: Document, count_tokens: Callable[[str], int] | None = None, *, estimate_tokens: bool = False
) -> str:
    """One line for the terminal: name, pages or sections, size in words, or in tokens (counted by
    ``count_tokens``, or estimated without a tokenizer with ``estimate_tokens``)."""
    parts = [document.name]
    pages = document.page_count
    parts.append(counted(pages, "page") if pages else counted(len(document.sections), "section"))
    if count_tokens is not None:
        parts.append(counted(count_tokens(document.text), "token"))
    elif estimate_tokens:
        parts.append("about " + counted(approximate_tokens(document.text), "token"))
    else:
        parts.append(counted(len(document.text.split()), "word"))
    return ", ".join(parts)
