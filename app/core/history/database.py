"""Opening the history file safely, and who owns each connection.

- A database written by a newer version is refused with a sentence and left byte-for-byte untouched.
- A damaged file, or one that is not a database, is moved aside (never deleted) and a fresh history started.
- Before a migration touches an existing file, a full copy is taken beside it (``history.sqlite3.bak-v<N>-<time>``).
- WAL journal with ``synchronous=FULL``: a commit is on disk when it returns, also through a power cut. FULL
  costs one fsync per commit; the history commits about once a second while a reply streams and once per bulk
  operation, so the cost is invisible, while NORMAL could lose the last replies to a power cut.
- The file is readable by its owner only (0600) in an owner-only folder (0700): conversations are private.
- A connection belongs to the thread that opened it (sqlite3's ``check_same_thread``): another thread that needs
  the history opens its own connection to the same file.

The first connection this process opens to a file does all of that, and marks replies a dead process left
``streaming`` as interrupted. Another connection to a file this process already has open (another thread's
store) skips it: the file was checked and migrated moments ago, and its streaming replies are live ones.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from app import APP_NAME
from app.core.errors import UserError
from app.core.history.schema import MIGRATIONS, migrate, refuse_newer

log = logging.getLogger(__name__)

BUSY_TIMEOUT_SECONDS = 5.0

# SQLite result codes that mean "this file is damaged or is not a database" (not "busy" or "no permission").
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


# -- files -------------------------------------------------------------------------------------------------


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


def _prepare_folder(folder: Path, *, enforce_private: bool) -> None:
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    elif enforce_private:
        # Our own data folder: tighten it if an older install or a copy left it open to others.
        os.chmod(folder, 0o700)


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
    refuse_newer(path, applied)
    return _Inspection(applied=applied)


def _move_aside(path: Path, damage: str) -> str:
    """Move a damaged or foreign file (and its journals) aside; returns the sentence that tells the user."""
    target = _free_name(path.with_name(f"{path.name}.corrupt-{_timestamp_for_file_name()}"))
    path.rename(target)
    # The journal files belong to the old file; left here they would be replayed into the new one.
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.rename(target.with_name(target.name + suffix))
    what = "was damaged" if damage == "damaged" else f"was not a {APP_NAME} conversation history"
    notice = (
        f"The conversation history file {what}, so {APP_NAME} moved it to {target} and started a new, empty "
        "history. Nothing was deleted: keep that file if you want to try to recover old conversations."
    )
    log.warning("%s", notice)
    return notice


def _backup(connection: sqlite3.Connection, path: Path, *, version: int) -> Path:
    target = _free_name(path.with_name(f"{path.name}.bak-v{version}-{_timestamp_for_file_name()}"))
    _create_private_file(target)
    copy = sqlite3.connect(target)
    try:
        connection.backup(copy)
    finally:
        copy.close()
    log.info("History database backed up to %s before migrating", target)
    return target


# -- opening -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedDatabase:
    connection: sqlite3.Connection  # usable only on the thread that opened it
    key: Path  # pass to ``release_database`` when the connection is closed
    backup_path: Path | None = None  # the copy taken before migrating, if one was needed
    recovery_notice: str | None = None  # a sentence for the user when a damaged file was moved aside


# How many open connections this process has to each (resolved) database path. Held while a first connection
# is opened, so a second one waits for the checks and migrations instead of repeating them.
_open_lock = threading.Lock()
_open_connections: Counter[Path] = Counter()


def open_database(path: Path, *, enforce_private_folder: bool = False) -> OpenedDatabase:
    """A connection to the history at ``path``, created, checked and migrated as needed.

    Raises UserError for a file from a newer version or one that cannot be opened right now.
    """
    _prepare_folder(path.parent, enforce_private=enforce_private_folder)
    key = path.resolve()
    with _open_lock:
        opened = _open_again(path, key) if _open_connections[key] else None
        if opened is None:
            opened = _open_first(path, key)
        _open_connections[key] += 1
    return opened


def release_database(key: Path) -> None:
    """Forget one connection of ``open_database``: the next first one checks the file again."""
    with _open_lock:
        _open_connections[key] -= 1
        if _open_connections[key] <= 0:
            del _open_connections[key]


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: ``transaction`` issues BEGIN IMMEDIATE itself. The connection keeps sqlite3's
    # check_same_thread: used from another thread than its opener's, it raises ProgrammingError.
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
    return connection


def _configure(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA foreign_keys = ON")


def _open_again(path: Path, key: Path) -> OpenedDatabase | None:
    """Another connection to a file this process has open: no check, backup or migration, and no streaming
    reply marked interrupted (it is a live one). None when the file is not fully migrated after all."""
    connection = _connect(path)
    try:
        _configure(connection)
        applied = [row[0] for row in connection.execute("SELECT name FROM schema_migrations")]
        refuse_newer(path, applied)  # another process may have upgraded it meanwhile
    except sqlite3.DatabaseError:  # replaced or damaged since: the full open deals with it
        connection.close()
        return None
    except BaseException:
        connection.close()
        raise
    if len(applied) < len(MIGRATIONS):
        connection.close()
        return None
    return OpenedDatabase(connection, key)


def _open_first(path: Path, key: Path) -> OpenedDatabase:
    applied: tuple[str, ...] = ()
    recovery_notice = None
    if path.exists() and path.stat().st_size > 0:
        inspection = _inspect(path)
        if inspection.damage:
            recovery_notice = _move_aside(path, inspection.damage)
        else:
            applied = inspection.applied
    _create_private_file(path)
    connection = _connect(path)
    try:
        pending = [migration for migration in MIGRATIONS if migration.name not in applied]
        backup_path = None
        if pending and applied:
            # Before anything changes the file, even its journal mode: the copy is the file as it was.
            backup_path = _backup(connection, path, version=len(applied))
        _configure(connection)
        migrate(connection, pending)
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
    return OpenedDatabase(connection, key, backup_path, recovery_notice)
