"""The on-disk cache of finished summaries, keyed by a hash of everything that produced them.

Section summaries are the expensive part of a long summary; keeping them lets another style, or a run after a
cancel, reuse what was already written. The cache only holds copies: any failure to read or write it is logged
and the summary is simply made again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from pathlib import Path

from app.core.paths import app_paths

log = logging.getLogger(__name__)


class SummaryCache:
    """Finished summaries on disk, keyed by a hash of everything that produced them.

    SQLite, one short connection per operation: the summarizer runs on the engine thread while the window may
    read from another, and a damaged cache file is moved aside and started afresh (it only holds copies).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or app_paths().summary_cache_dir / "summaries.sqlite3"

    def _connect(self) -> sqlite3.Connection:
        _make_private(self.path)
        connection = sqlite3.connect(self.path, timeout=10)
        try:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS summaries (key TEXT PRIMARY KEY, text TEXT NOT NULL, created REAL NOT NULL)"
            )
        except sqlite3.DatabaseError:
            connection.close()
            log.warning("summary cache %s is damaged; starting a new one", self.path)
            self.path.replace(self.path.with_suffix(".damaged"))
            _make_private(self.path)
            connection = sqlite3.connect(self.path, timeout=10)
            connection.execute(
                "CREATE TABLE summaries (key TEXT PRIMARY KEY, text TEXT NOT NULL, created REAL NOT NULL)"
            )
        return connection

    def get(self, key: str) -> str | None:
        try:
            connection = self._connect()
            try:
                row = connection.execute("SELECT text FROM summaries WHERE key = ?", (key,)).fetchone()
            finally:
                connection.close()
        except (sqlite3.Error, OSError):
            log.warning("summary cache read failed", exc_info=True)
            return None
        return str(row[0]) if row else None

    def put(self, key: str, text: str) -> None:
        try:
            connection = self._connect()
            try:
                with connection:
                    connection.execute(
                        "INSERT OR REPLACE INTO summaries (key, text, created) VALUES (?, ?, ?)",
                        (key, text, time.time()),
                    )
            finally:
                connection.close()
        except (sqlite3.Error, OSError):
            log.warning("summary cache write failed", exc_info=True)

    def count(self) -> int:
        try:
            connection = self._connect()
            try:
                return int(connection.execute("SELECT COUNT(*) FROM summaries").fetchone()[0])
            finally:
                connection.close()
        except (sqlite3.Error, OSError):
            return 0


def _make_private(path: Path) -> None:
    """Create ``path`` (and the folders it needs) for its owner alone, as the history is: summaries quote the
    documents. SQLite gives its journal the database file's permissions, so those stay private too."""
    missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    if path.parent.stat().st_mode & 0o077:
        try:  # our cache folder, left open by an earlier version; a shared folder given as a path is not ours
            os.chmod(path.parent, 0o700)
        except PermissionError:
            log.debug("cannot make %s private", path.parent)
    descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(descriptor)
    if path.stat().st_mode & 0o077:  # made by an earlier version with the default permissions
        os.chmod(path, 0o600)


def cache_key(*parts: object) -> str:
    """A stable key for a cache entry: the sha256 of ``parts`` as JSON (dict keys sorted, anything else as str)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()
