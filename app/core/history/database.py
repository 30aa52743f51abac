"""Opening the history file safely, and who owns each connection.

- A database written by a newer version is refused with a sentence and left byte-for-byte untouched.
- A damaged file, or one that is not a database, is moved aside (never deleted) and a fresh history started.
- Before a migration touches an existing file, a full copy is taken beside it (``history.sqlite3.bak-v<N>-<time>``).
- WAL journal with ``synchronous=FULL``: a commit is on disk when it returns, also through a power cut. FULL
  costs one fsync per commit; the history commits about once a second while a reply streams and once per bulk
  operation, so the cost is invisible, while NORMAL could lose the last replies to a power cut.
- The file is readable by its owner only (0600) in an owner-only folder (0700): conversations are private.
- A file or folder that cannot be written (permissions, an immutable file, a read-only mount) is opened
  read-only when it can be read: the history can be read and searched, ``recovery_notice`` says that new
  messages will not be kept, and every write is refused with ``HistoryReadOnlyError``'s sentence.
- A write of another process (an import) is waited for, up to ``BUSY_TIMEOUT_SECONDS``; opening never needs
  the write lock unless the file must be created or migrated, so ``history list`` reads during an import.
- A connection belongs to the thread that opened it (sqlite3's ``check_same_thread``): another thread that needs
  the history opens its own connection to the same file.

The first connection this process opens to a file does all of that, and marks replies a dead process left
``streaming`` as interrupted. Another connection to a file this process already has open (another thread's
store) skips it: the file was checked and migrated moments ago, and its streaming replies are live ones.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import stat
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from app import APP_NAME
from app.core.history.errors import BUSY_TIMEOUT_SECONDS, HistoryUnavailableError, history_busy
from app.core.history.schema import MIGRATIONS, migrate, refuse_newer

log = logging.getLogger(__name__)

__all__ = ["BUSY_TIMEOUT_SECONDS", "OpenedDatabase", "open_database", "release_database"]

# SQLite result codes that mean "this file is damaged or is not a database" (not "busy" or "no permission").
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
# ... and those that mean "another connection holds the lock".
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
# Errors of the file system that mean "you may not write here": then the history is opened read-only.
_UNWRITABLE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}
# Marking the replies of a dead process interrupted is worth no wait: it is done at the next start instead.
_MARK_INTERRUPTED_WAIT_MS = 200


# -- files -------------------------------------------------------------------------------------------------


def _is_damage(error: sqlite3.DatabaseError) -> bool:
    """True for "damaged / not a database"; False for "locked", "no permission" and other passing troubles."""
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(error).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text


def _is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(error).lower()
    return "locked" in text or "busy" in text


def _refuse_wrong_kind(path: Path) -> None:
    """A sentence for a folder, FIFO or device where the file (or a file where its folder) should be."""
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = None  # missing (it is created), or unreachable (opening it says why)
    if mode is not None and not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe or a device)"
        raise HistoryUnavailableError(
            f"The conversation history should be a file at {path}, but that is {what}. Move or rename it, "
            f"then start {APP_NAME} again (a new history is created there)."
        )
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise HistoryUnavailableError(
            f"The conversation history's folder {folder} is a file, not a folder. Move or rename that file, "
            f"then start {APP_NAME} again."
        )


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
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise HistoryUnavailableError(
                f"The folder for the conversation history, {folder}, could not be created "
                f"({exc.strerror or exc}). Make its parent folder writable, or set LLAMADESK_HOME to a folder "
                "you can write, and try again."
            ) from exc
    elif enforce_private:
        # Our own data folder: tighten it if an older install or a copy left it open to others.
        try:
            os.chmod(folder, 0o700)
        except OSError as exc:  # not ours, or a read-only mount: opening the file says what that means
            log.info("Could not make %s private: %s", folder, exc)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection. A WAL file in a folder we cannot write has no shared-memory file to share, so
    then it is read as immutable: nobody can be writing it while we cannot either."""
    uri = path.resolve().as_uri()
    connection = sqlite3.connect(
        uri + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
    )
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return connection
    except sqlite3.OperationalError as exc:
        connection.close()
        if _is_busy(exc) or _folder_writable(path.parent):
            raise
        log.info("Reading %s as immutable: %s", path, exc)
    return sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, isolation_level=None)


def _folder_writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (os.access says yes to root on a read-only mount)."""
    try:
        probe = folder / f".llamadesk-write-probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class _Inspection:
    """What a read-only look at an existing file found."""

    damage: str | None = None  # "damaged" or "foreign" when the file must be moved aside
    applied: tuple[str, ...] = ()  # the migrations it has


def _inspect(path: Path) -> _Inspection:
    """Check an existing file read-only, so that a file we refuse is left exactly as it was."""
    try:
        connection = _connect_read_only(path)
    except sqlite3.DatabaseError as exc:
        if _is_busy(exc):
            raise history_busy(path) from exc
        if _is_damage(exc):
            return _Inspection(damage="damaged")
        raise _unreadable(path, exc) from exc
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
        if _is_busy(exc):
            raise history_busy(path) from exc
        raise _unreadable(path, exc) from exc
    finally:
        connection.close()
    refuse_newer(path, applied)
    return _Inspection(applied=applied)


def _unreadable(path: Path, error: BaseException) -> HistoryUnavailableError:
    return HistoryUnavailableError(
        f"The conversation history at {path} could not be read ({error}). Check that the file and its folder "
        f"can be read by you, then start {APP_NAME} again; nothing in it was changed."
    )


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
    # A sentence for the user: a damaged file was moved aside, or the history could only be opened read-only.
    recovery_notice: str | None = None
    read_only: bool = False


# How many open connections this process has to each (resolved) database path. Held while a first connection
# is opened, so a second one waits for the checks and migrations instead of repeating them.
_open_lock = threading.Lock()
_open_connections: Counter[Path] = Counter()
# The files this process could open read-only only, with why: another thread's connection is read-only too.
_read_only_reasons: dict[Path, str] = {}


def open_database(path: Path, *, enforce_private_folder: bool = False) -> OpenedDatabase:
    """A connection to the history at ``path``, created, checked and migrated as needed; read-only (and saying
    so in ``recovery_notice``) when the file or its folder cannot be written.

    Raises a UserError with a sentence when the history cannot be opened at all.
    """
    _refuse_wrong_kind(path)
    _prepare_folder(path.parent, enforce_private=enforce_private_folder)
    key = path.resolve()
    with _open_lock:
        opened = None
        if _open_connections[key]:
            reason = _read_only_reasons.get(key)
            opened = _open_read_only(path, key, reason) if reason else _open_again(path, key)
        if opened is None:
            opened = _open_writable_or_read_only(path, key)
        _open_connections[key] += 1
    return opened


def release_database(key: Path) -> None:
    """Forget one connection of ``open_database``: the next first one checks the file again."""
    with _open_lock:
        _open_connections[key] -= 1
        if _open_connections[key] <= 0:
            del _open_connections[key]
            _read_only_reasons.pop(key, None)


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


def _open_writable_or_read_only(path: Path, key: Path) -> OpenedDatabase:
    try:
        return _open_first(path, key)
    except sqlite3.OperationalError as exc:
        if _is_busy(exc):
            raise history_busy(path) from exc
        log.info("History database %s cannot be opened for writing: %s", path, exc)
        reason = str(exc)
    except OSError as exc:
        if exc.errno not in _UNWRITABLE_ERRNOS:
            raise
        log.info("History database %s cannot be opened for writing: %s", path, exc)
        reason = exc.strerror or str(exc)
    opened = _open_read_only(path, key, reason)
    _read_only_reasons[key] = reason
    return opened


def _open_read_only(path: Path, key: Path, reason: str) -> OpenedDatabase:
    """The history opened read-only, with the sentence that says so; a sentence when it cannot even be read."""
    if not path.is_file() or path.stat().st_size == 0:
        raise HistoryUnavailableError(
            f"The conversation history cannot be created in {path.parent} ({reason}). Make that folder "
            f"writable, or set LLAMADESK_HOME to a folder you can write, and start {APP_NAME} again."
        )
    try:
        connection = _connect_read_only(path)
    except sqlite3.DatabaseError as exc:
        raise _unreadable(path, exc) from exc
    try:
        applied = [row[0] for row in connection.execute("SELECT name FROM schema_migrations")]
        refuse_newer(path, applied)
        connection.execute("PRAGMA query_only = ON")  # belt and braces: this connection never writes
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise _unreadable(path, exc) from exc
    except BaseException:
        connection.close()
        raise
    if len(applied) < len(MIGRATIONS):
        connection.close()
        raise HistoryUnavailableError(
            f"The conversation history at {path} was written by an older version of {APP_NAME} and must be "
            f"updated, but it cannot be written ({reason}). Make the file and its folder writable, then start "
            f"{APP_NAME} again."
        )
    notice = (
        f"The conversation history at {path} cannot be written ({reason}), so it is open read-only: you can "
        f"read and search your conversations and chat, but new messages will not be kept. Make the file and "
        f"its folder writable and restart {APP_NAME} to save again."
    )
    return OpenedDatabase(connection, key, recovery_notice=notice, read_only=True)


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
        _mark_interrupted(connection)
    except BaseException:
        connection.close()
        raise
    return OpenedDatabase(connection, key, backup_path, recovery_notice)


def _mark_interrupted(connection: sqlite3.Connection) -> None:
    """Replies a dead process left ``streaming`` become interrupted. Read first, so that opening needs no write
    lock (another process's import holds it); when busy, they are marked at the next start instead."""
    if connection.execute("SELECT 1 FROM messages WHERE state = 'streaming' LIMIT 1").fetchone() is None:
        return
    connection.execute(f"PRAGMA busy_timeout = {_MARK_INTERRUPTED_WAIT_MS}")
    try:
        interrupted = connection.execute(
            "UPDATE messages SET state = 'interrupted' WHERE state = 'streaming'"
        ).rowcount
    except sqlite3.OperationalError as exc:
        if not _is_busy(exc):
            raise
        log.info("Replies left streaming are marked interrupted later: the history is busy (%s).", exc)
        return
    finally:
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
    if interrupted:
        log.info("Marked %d reply(ies) interrupted: the process writing them ended mid-reply.", interrupted)
