"""Looking at a history database from outside the store, as another process would."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from app.core.documents.document import Document, Section, make_document


def on_disk(path: Path, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """What another process would read now: a separate connection sees only committed data."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql, parameters).fetchall()
    finally:
        connection.close()


def dump(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def text_document(name: str, text: str) -> Document:
    """A one-section document, as pasted text would make."""
    return make_document(name, "text", [Section("text", text)])


def paged_document(name: str = "report.pdf") -> Document:
    """A three-page PDF's document whose second page has no text (a scanned image)."""
    pages = ["Page one text.", "", "Page three text,\nwith two lines."]
    sections = [Section(f"page {number}", text, page=number) for number, text in enumerate(pages, start=1)]
    return make_document(name, "pdf", sections, path=f"/docs/{name}", size=2048)
