"""saved states: llama.cpp's cache for a conversation's tokens, kept in memory and on disk.

A state is the KV cache of one sequence (``llama_state_seq_get_data``) together with the tokens it holds. Being
the cache *of those tokens*, a state can only ever serve their common prefix with a new prompt, so a state found
under the wrong conversation is useless, never wrong. What could make it wrong is the model or the cache layout,
so every file starts with a header naming them (``StateSignature``): the model file's content hash, the context
size, the cache types, flash attention, the bindings' version (llama.cpp's state format) and our own format
version. A file whose header does not match, or that is truncated or fails its checksum, is not used (a log line
says why), and the reply is evaluated cold.

States are kept per conversation key (a string the caller chooses: the history's conversation id), several per
key, one per branch: saving a state replaces the key's states whose tokens are a prefix of the new one.

- In memory: the most recent states, within a budget (the smaller of 1 GB and a tenth of the memory available),
  so switching between conversations in one session restores without reading a file. Dropped when another
  model loads.
- On disk, in ``AppPaths.saved_states_dir`` (folder 0700, files 0600, written to a temporary file and renamed
  into place): within a disk budget (the ``saved_states_mb`` setting, handed in through ``DefaultDiskBudget``:
  this package does not read the settings), least recently used first out.

Files are written by a writer thread, so the engine thread only copies the state (a memory copy) and moves on.
The writer is not a daemon: at interpreter exit Python waits for it to finish its queue, then it ends. Thread
safety: every public method may be called from any thread.

The model file's hash never holds up the engine thread: it is computed on a thread of its own
(``SignatureSource``). Until it is known, the engine thread restores states from memory only (a file's state
is not read: the prompt is evaluated cold), and the writer thread waits for it before writing the states queued.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock

from app.core.files import read_json, write_json_atomic
from app.core.paths import app_paths

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAGIC = b"LDSTATE\x00"
SUFFIX = ".llstate"
DIGESTS_FILE = "model-digests.json"
DEFAULT_DISK_BUDGET_MB = 4096
RAM_BUDGET_CEILING = 1 << 30
_LENGTH = struct.Struct("<I")
_WRITER_IDLE_S = 1.0  # the writer thread ends after this long without work; the next save starts another
_DIGESTS_LOCK_SECONDS = 10.0  # another process holds the digests file's lock only for a read and a write


def saved_state_key(conversation_uuid: str) -> str:
    """The state key of a conversation of the history: its uuid, never reused (a database id can be, once the
    conversation holding it is deleted)."""
    return f"conversation-{conversation_uuid}"


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def default_ram_budget() -> int:
    return min(RAM_BUDGET_CEILING, psutil.virtual_memory().available // 10)


class DefaultDiskBudget:
    """The disk budget of the app's cache (``SavedStateStore.default``), read at each write. The settings store hands
    its ``saved_states_mb`` in with ``use``; until then (a process without settings) it is the default."""

    _source: Callable[[], int] | None = None

    @classmethod
    def use(cls, source: Callable[[], int]) -> None:
        cls._source = source

    @classmethod
    def read(cls) -> int:
        source = cls._source
        return source() if source is not None else DEFAULT_DISK_BUDGET_MB * 1024 * 1024


@dataclass(frozen=True)
class StateSignature:
    """Everything a state is valid for besides its tokens."""

    model_sha256: str
    context_size: int
    type_k: int
    type_v: int
    flash_attention: int
    llama_cpp_version: str
    format_version: int = FORMAT_VERSION


class ModelDigests:
    """Model files' sha256, remembered by path, size and modification time so a file is hashed once.

    One instance per digests file in a process (``for_file``): every update re-reads the file, changes it and
    writes it back under that instance's lock and a file lock beside it, so concurrent updates, from threads or
    from other processes (a download in a terminal), all stay.
    """

    def __init__(self, file: Path) -> None:
        self._file = file
        self._lock = threading.Lock()
        self._file_lock = FileLock(file.with_name(file.name + ".lock"), mode=0o600)

    @classmethod
    def for_file(cls, file: Path) -> ModelDigests:
        """The process's one owner of ``file``."""
        key = file.resolve()
        with _DIGESTS_OWNERS_LOCK:
            owner = _DIGESTS_OWNERS.get(key)
            if owner is None:
                owner = _DIGESTS_OWNERS[key] = cls(key)
            return owner

    def known(self, path: Path) -> str | None:
        """``path``'s sha256 if it was hashed (or verified by a download) before; never hashes."""
        cached = self._entries().get(_digest_entry(path))
        return cached if isinstance(cached, str) else None

    def digest(self, path: Path) -> str:
        """``path``'s sha256, hashed now unless known. Takes seconds for a large file: never on the engine
        thread."""
        known = self.known(path)
        if known is not None:
            return known
        started = time.perf_counter()
        hasher = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
        digest = hasher.hexdigest()
        log.info("hashed %s for its saved states in %.2f s", path.name, time.perf_counter() - started)
        try:
            self.remember(path, digest)
        except OSError:  # only a shortcut: the file is hashed again next time
            log.warning("the sha256 of %s could not be kept for its saved states", path.name, exc_info=True)
        return digest

    def remember(self, path: Path, digest: str) -> None:
        """Keep ``path``'s sha256, known already (a download verified it), so it is never hashed again."""
        entry = _digest_entry(path)
        # A file replaced in place leaves its old entry behind: keep only the path's latest.
        prefix = f"{path.resolve()}|"
        with self._lock:
            self._file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with self._file_lock.acquire(timeout=_DIGESTS_LOCK_SECONDS):
                known = {k: v for k, v in self._entries().items() if not k.startswith(prefix)}
                known[entry] = digest.lower()
                write_json_atomic(self._file, known)

    def _entries(self) -> dict[str, Any]:
        # Written whole and renamed into place: a read needs no lock.
        known = read_json(self._file)
        return known if isinstance(known, dict) else {}


def _digest_entry(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


_DIGESTS_OWNERS: dict[Path, ModelDigests] = {}
_DIGESTS_OWNERS_LOCK = threading.Lock()


def remember_model_digest(path: Path, digest: str) -> None:
    """A downloaded model's verified sha256, kept for its saved states (see ``ModelDigests``)."""
    try:
        ModelDigests.for_file(app_paths().saved_states_dir / DIGESTS_FILE).remember(path, digest)
    except OSError:  # only a shortcut: the file is hashed when a state first needs it
        log.warning("the sha256 of %s could not be kept for its saved states", path.name, exc_info=True)


class SignatureSource:
    """The loaded model's signature: known at once (``known``: its file's digest was remembered), or computed on
    a thread of its own (``hashing``), since hashing a multi-GB file takes seconds.

    The engine thread only asks, with ``get_if_ready()``, and never waits; ``get()`` waits for the hash (the
    writer thread, before writing a state). ``hashing_since`` tells whether the hash ran during a reply: it
    competes with generation for the CPU and memory bandwidth, so that reply's speed is no quiet measurement.
    """

    def __init__(self, compute: Callable[[], StateSignature]) -> None:
        self._compute = compute
        self._computing = threading.Lock()  # held while ``compute`` runs: ``get()`` waits on it
        self._settled = threading.Event()  # computed, or failed
        self._times = threading.Lock()
        self._value: StateSignature | None = None
        self._failure: Exception | None = None  # remembered: a file that cannot be hashed is not read again
        self._started: float | None = None  # perf_counter() when computing began, and ended
        self._ended: float | None = None

    @classmethod
    def known(cls, signature: StateSignature) -> SignatureSource:
        source = cls(lambda: signature)
        source._value = signature
        source._settled.set()
        return source

    @classmethod
    def hashing(cls, compute: Callable[[], StateSignature]) -> SignatureSource:
        """A signature whose ``compute`` (hashing the model file) starts now, on a thread of its own."""
        source = cls(compute)
        with source._times:  # before the thread runs: a reply starting right away already counts it
            source._started = time.perf_counter()
        threading.Thread(target=source._compute_quietly, name="model-digest", daemon=True).start()
        return source

    def get_if_ready(self) -> StateSignature | None:
        """The signature if known now, else None (still hashing, or the file could not be hashed). Never waits."""
        return self._value

    def get(self) -> StateSignature:
        """The signature, waiting for the hash under way (or computing it here): never on the engine thread."""
        with self._computing:
            if self._failure is not None:
                raise self._failure
            if self._value is None:
                with self._times:
                    self._started = self._started or time.perf_counter()
                try:
                    self._value = self._compute()
                except Exception as exc:
                    self._failure = exc
                    raise
                finally:
                    with self._times:
                        self._ended = time.perf_counter()
                    self._settled.set()
            return self._value

    def wait(self, timeout: float) -> StateSignature | None:
        """The signature once known, waiting at most ``timeout`` for a hash under way; None if it was not known
        in time or could not be computed."""
        self._settled.wait(timeout)
        return self._value

    def hashing_since(self, since: float) -> bool:
        """Whether the signature was being computed at any moment from ``since`` (a ``perf_counter()``) on."""
        with self._times:
            return self._started is not None and (self._ended is None or self._ended >= since)

    def _compute_quietly(self) -> None:
        try:
            self.get()
        except Exception:
            log.warning(
                "the loaded model file could not be hashed: its saved states are not kept",
                exc_info=True,
            )


@dataclass
class _RamState:
    key: str
    tokens: tuple[int, ...]
    data: bytearray


@dataclass(frozen=True)
class Candidate:
    """A saved state that could serve a prompt: in memory (``data``) or in a file (``path``)."""

    key: str
    tokens: tuple[int, ...]
    usable: int  # its common prefix with the prompt
    data: bytearray | None = None
    path: Path | None = None


@dataclass(frozen=True)
class _Header:
    signature: StateSignature
    key: str
    n_tokens: int
    state_bytes: int
    crc32: int
    body_offset: int


@dataclass(frozen=True)
class _WriteJob:
    key: str
    tokens: tuple[int, ...]
    data: bytearray
    signature: SignatureSource
    generation: tuple[int, int]


class SavedStateStore:
    """Saved states in memory and on disk. See the module docstring."""

    def __init__(
        self,
        folder: Path,
        *,
        disk_budget: Callable[[], int] | int = DEFAULT_DISK_BUDGET_MB * 1024 * 1024,
        ram_budget: int | None = None,
    ) -> None:
        self.folder = folder
        self._disk_budget = disk_budget if callable(disk_budget) else (lambda: disk_budget)
        self.ram_budget = default_ram_budget() if ram_budget is None else ram_budget
        self.digests = ModelDigests.for_file(folder / DIGESTS_FILE)
        self._lock = threading.RLock()
        self._ram: collections.OrderedDict[int, _RamState] = collections.OrderedDict()
        self._ram_bytes = 0
        self._ram_ids = iter(range(1, 1 << 62))
        # A key's generation grows when its states are forgotten, so a write queued before cannot bring one back.
        self._generations: collections.Counter[str] = collections.Counter()
        self._epoch = 0  # grows with clear(), for the same reason
        self._jobs: queue.SimpleQueue[_WriteJob] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._pending = 0
        self._queued_bytes = 0  # states copied for the writer and not yet written, at most ``queue_budget``
        self.queue_budget = max(self.ram_budget, 256 * 1024 * 1024)
        self._idle = threading.Condition(self._lock)

    @classmethod
    def default(cls) -> SavedStateStore:
        """The app's cache: its folder from ``app.core.paths``, its disk budget from ``DefaultDiskBudget``. One
        per folder in a process, so forgetting a conversation also drops the writes of it still queued."""
        folder = app_paths().saved_states_dir
        with _DEFAULTS_LOCK:
            cache = _DEFAULTS.get(folder)
            if cache is None:
                cache = _DEFAULTS[folder] = cls(folder, disk_budget=DefaultDiskBudget.read)
            return cache

    # -- looking up --------------------------------------------------------------------------------------

    def best(
        self, key: str, prompt: Sequence[int], signature: SignatureSource, better_than: int
    ) -> Candidate | None:
        """The key's state sharing the longest prefix with ``prompt``, if longer than ``better_than``. Never waits
        for the model file's hash: until it is known, only states in memory (of this model) are looked at."""
        best: Candidate | None = None
        with self._lock:
            best_id = None
            for entry_id, entry in self._ram.items():
                if entry.key == key:
                    usable = common_prefix(entry.tokens, prompt)
                    if usable > better_than and (best is None or usable > best.usable):
                        best, best_id = Candidate(key, entry.tokens, usable, data=entry.data), entry_id
            if best_id is not None:
                self._ram.move_to_end(best_id)  # least recently used leaves memory first
        files = self._files_of(key)
        wanted = signature.get_if_ready()
        if not files or wanted is None:
            return best
        for path in files:
            found = self._read_header(path)
            if found is None:
                continue
            header, tokens = found
            if header.signature != wanted or header.key != key:
                log.info("saved state %s is for another model or setting; not used", path.name)
                continue
            usable = common_prefix(tokens, prompt)
            if usable > better_than and (best is None or usable > best.usable):
                best = Candidate(key, tokens, usable, path=path)
        return best

    def load(self, candidate: Candidate, signature: SignatureSource) -> bytearray | None:
        """The candidate's state bytes, read and checked; None (with a log line, the file removed) if it is
        truncated or damaged."""
        if candidate.data is not None:
            return candidate.data
        assert candidate.path is not None
        path = candidate.path
        try:
            with path.open("rb") as handle:
                found = self._parse_header(handle, path)
                if found is None:
                    return None
                header, _tokens = found
                data = bytearray(header.state_bytes)
                if handle.readinto(data) != header.state_bytes or handle.read(1):
                    log.warning("saved state %s is truncated or too long; discarded", path.name)
                    self._remove(path)
                    return None
        except OSError as exc:
            log.warning("saved state %s could not be read (%s); not used", path.name, exc)
            return None
        tokens_bytes = struct.pack(f"<{len(candidate.tokens)}i", *candidate.tokens)
        if zlib.crc32(data, zlib.crc32(tokens_bytes)) != header.crc32:
            log.warning("saved state %s fails its checksum; discarded", path.name)
            self._remove(path)
            return None
        if header.signature != signature.get_if_ready():
            return None
        self._touch(path)
        return data

    # -- saving ------------------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        tokens: Sequence[int],
        data: bytearray,
        signature: SignatureSource,
        *,
        persist: bool = True,
    ) -> None:
        """Keep a state in memory and, with ``persist``, queue it for the disk. Returns at once."""
        saved = tuple(tokens)
        with self._lock:
            for entry_id, entry in list(self._ram.items()):
                if entry.key == key and saved[: len(entry.tokens)] == entry.tokens:
                    self._drop_ram_entry(entry_id)
            if len(data) <= self.ram_budget:
                self._ram[next(self._ram_ids)] = _RamState(key, saved, data)
                self._ram_bytes += len(data)
                while self._ram_bytes > self.ram_budget and self._ram:
                    self._drop_ram_entry(next(iter(self._ram)))
            if not persist:
                return
            if self._pending and self._queued_bytes + len(data) > self.queue_budget:
                # The disk is slower than the turns: a copy per turn would pile up in memory. This one is kept
                # in RAM (above) and saved with a later turn or on leaving the conversation.
                log.info(
                    "a state of %s was not queued for the disk: earlier ones are still being written", key
                )
                return
            self._pending += 1
            self._queued_bytes += len(data)
            self._jobs.put(_WriteJob(key, saved, data, signature, (self._epoch, self._generations[key])))
            if self._writer is None or not self._writer.is_alive():
                # Not a daemon (explicitly: a thread started by the daemon engine thread would inherit it).
                self._writer = threading.Thread(target=self._write_queued, name="state-writer", daemon=False)
                self._writer.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued state is on disk; False if ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def drop_memory(self) -> None:
        """Forget the states in memory (another model loaded: they were made by the previous one)."""
        with self._lock:
            self._ram.clear()
            self._ram_bytes = 0

    def forget(self, key: str) -> None:
        """Delete a key's states everywhere (its conversation was deleted)."""
        with self._lock:
            self._generations[key] += 1
            for entry_id, entry in list(self._ram.items()):
                if entry.key == key:
                    self._drop_ram_entry(entry_id)
            for path in self._files_of(key):
                self._remove(path)

    def clear(self) -> None:
        """Delete every saved state (Settings' "Clear")."""
        with self._lock:
            for key in {entry.key for entry in self._ram.values()}:
                self._generations[key] += 1
            self.drop_memory()
            self._epoch += 1
            for path in self._all_files():
                self._remove(path)

    def disk_usage(self) -> int:
        return sum(size for _path, size, _used in self._file_stats())

    def memory_usage(self) -> int:
        with self._lock:
            return self._ram_bytes

    # -- the writer thread -------------------------------------------------------------------------------

    def _write_queued(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=_WRITER_IDLE_S)
            except queue.Empty:
                with self._lock:
                    # Ends only with nothing queued: a put() between the timeout and here starts no new writer
                    # because this one is still alive, so look again.
                    if self._jobs.empty():
                        self._writer = None
                        return
                continue
            try:
                self._write(job)
            except Exception:  # a full disk, a folder made read-only: the state is only a cache
                log.exception("a saved state could not be saved")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._queued_bytes -= len(job.data)
                    self._idle.notify_all()

    def _write(self, job: _WriteJob) -> None:
        budget = self._disk_budget()
        tokens_bytes = struct.pack(f"<{len(job.tokens)}i", *job.tokens)
        size_estimate = len(tokens_bytes) + len(job.data)
        if size_estimate > budget:
            return
        signature = job.signature.get()  # waits here, on the writer thread, for a hash under way
        header = json.dumps(
            {
                "signature": asdict(signature),
                "key": job.key,
                "n_tokens": len(job.tokens),
                "state_bytes": len(job.data),
                "crc32": zlib.crc32(job.data, zlib.crc32(tokens_bytes)),
            }
        ).encode("utf-8")
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{_key_hash(job.key)}.{hashlib.sha256(tokens_bytes).hexdigest()[:16]}{SUFFIX}"
        final = self.folder / name
        temporary = self.folder / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        # No fsync: a state is a cache, and one cut short by a power loss fails its checksum and is discarded.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(MAGIC + _LENGTH.pack(len(header)) + header)
                handle.write(tokens_bytes)
                handle.write(job.data)
            with self._lock:
                forgotten = (self._epoch, self._generations[job.key]) != job.generation
                if forgotten:  # while it was being written
                    temporary.unlink(missing_ok=True)
                    return
                os.replace(temporary, final)
                self._replace_prefixes(job.key, job.tokens, signature, keep=final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self._evict(budget, keep=final)

    def _replace_prefixes(
        self, key: str, tokens: tuple[int, ...], signature: StateSignature, keep: Path
    ) -> None:
        for path in self._files_of(key):
            if path == keep:
                continue
            found = self._read_header(path)
            if found is None:
                continue
            header, old_tokens = found
            if header.signature == signature and tokens[: len(old_tokens)] == old_tokens:
                self._remove(path)

    def _evict(self, budget: int, keep: Path) -> None:
        with self._lock:
            stats = sorted(self._file_stats(), key=lambda item: item[2])
            total = sum(size for _path, size, _used in stats)
            for path, size, _used in stats:
                if total <= budget:
                    break
                if path == keep:
                    continue
                log.info("saved state %s evicted (least recently used)", path.name)
                self._remove(path)
                total -= size

    # -- files -------------------------------------------------------------------------------------------

    def _all_files(self) -> list[Path]:
        try:
            return [
                p for p in self.folder.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith(".")
            ]
        except FileNotFoundError:
            return []

    def _files_of(self, key: str) -> list[Path]:
        prefix = _key_hash(key) + "."
        return [p for p in self._all_files() if p.name.startswith(prefix)]

    def _file_stats(self) -> list[tuple[Path, int, int]]:
        stats = []
        for path in self._all_files():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            stats.append((path, stat.st_size, stat.st_mtime_ns))
        return stats

    def _read_header(self, path: Path) -> tuple[_Header, tuple[int, ...]] | None:
        try:
            with path.open("rb") as handle:
                return self._parse_header(handle, path)
        except OSError as exc:
            log.warning("saved state %s could not be read (%s); not used", path.name, exc)
            return None

    def _parse_header(self, handle: Any, path: Path) -> tuple[_Header, tuple[int, ...]] | None:
        """The header and tokens, with the handle left at the state bytes; None if the file is not a state of
        ours (removed, with a log line)."""
        try:
            start = handle.read(len(MAGIC) + _LENGTH.size)
            if len(start) != len(MAGIC) + _LENGTH.size or not start.startswith(MAGIC):
                raise ValueError("not a saved state")
            (length,) = _LENGTH.unpack(start[len(MAGIC) :])
            if length > 1 << 16:
                raise ValueError("header too long")
            raw = json.loads(handle.read(length).decode("utf-8"))
            if not isinstance(raw, dict) or not isinstance(raw.get("key"), str):
                raise ValueError("a header without its fields")
            signature = _checked_signature(raw.get("signature"))
            # Each count within what the file can hold, before anything is read or allocated by it: a forged
            # header (2**62 tokens, a negative size) is damage like any other.
            size = os.fstat(handle.fileno()).st_size
            n_tokens = _header_number(raw, "n_tokens", 0, size // 4)
            state_bytes = _header_number(raw, "state_bytes", 0, size)
            crc32 = _header_number(raw, "crc32", 0, 0xFFFFFFFF)
            tokens_raw = handle.read(4 * n_tokens)
            if len(tokens_raw) != 4 * n_tokens:
                raise ValueError("truncated in its tokens")
            tokens = struct.unpack(f"<{n_tokens}i", tokens_raw)
            expected = len(MAGIC) + _LENGTH.size + length + 4 * n_tokens + state_bytes
            if size != expected:
                raise ValueError("truncated or too long")
            header = _Header(signature, raw["key"], n_tokens, state_bytes, crc32, handle.tell())
        # OverflowError, RecursionError: numbers or nesting beyond what a header of ours holds, caught as well
        # in case a check above misses one.
        except (ValueError, KeyError, TypeError, struct.error, OverflowError, RecursionError) as exc:
            log.warning("saved state %s is damaged (%s); discarded", path.name, exc)
            self._remove(path)
            return None
        return header, tokens

    def _touch(self, path: Path) -> None:
        with contextlib.suppress(OSError):  # its place in the eviction order only
            os.utime(path)

    def _remove(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("saved state %s could not be deleted (%s)", path.name, exc)

    def _drop_ram_entry(self, entry_id: int) -> None:
        entry = self._ram.pop(entry_id)
        self._ram_bytes -= len(entry.data)


_C_INT = (-(1 << 31), (1 << 31) - 1)  # the signature's numbers are llama.cpp's C ints


def _header_number(raw: dict[str, Any], name: str, low: int, high: int) -> int:
    """A whole number of the header within ``low..high``, else ValueError naming it."""
    value = raw.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"its {name} is not a number from {low} to {high}")
    return value


def _checked_signature(raw: object) -> StateSignature:
    """The header's signature, each field of its type (and a number within a C int), else ValueError."""
    if not isinstance(raw, dict):
        raise ValueError("a header without its signature")
    values: dict[str, Any] = {}
    for field in fields(StateSignature):
        if field.type == "str":
            if not isinstance(raw.get(field.name), str):
                raise ValueError(f"its signature's {field.name} is not text")
            values[field.name] = raw[field.name]
        else:  # the others are whole numbers
            values[field.name] = _header_number(raw, field.name, *_C_INT)
    if set(raw) - set(values):
        raise ValueError("its signature has fields of another version")
    return StateSignature(**values)


_DEFAULTS: dict[Path, SavedStateStore] = {}
_DEFAULTS_LOCK = threading.Lock()


def forget_conversations(conversation_uuids: Sequence[str]) -> None:
    """Delete the saved states of conversations deleted for good."""
    cache = SavedStateStore.default()
    for conversation_uuid in conversation_uuids:
        cache.forget(saved_state_key(conversation_uuid))


def _key_hash(key: str) -> str:
    # File names never carry the key itself: it is the caller's string, and names must stay portable.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]
