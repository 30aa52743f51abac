"""The download queue: each job (a model's files, pinned to one commit) and its state, kept on disk.

The queue is JSON in ``app_paths().downloads_queue_file``, rewritten atomically after every change, so a window
and a terminal command share it and a restart finds every unfinished download. Two kinds of OS-level lock
(``filelock``: ``flock`` on Unix, ``LockFileEx`` on Windows, released by the OS when a process dies) keep
processes apart: one around each read-modify-write of the queue file, and one per job, held by the process that
downloads it from its claim to its install, so a second process never writes into the same partial.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock, Timeout

from app.core.errors import UserError
from app.core.files import write_json_atomic
from app.core.models.catalog import RemoteFile
from app.core.models.inventory import repo_folder_name
from app.core.paths import app_paths

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".part"
QUEUE_VERSION = 1

STATE_QUEUED = "queued"
STATE_DOWNLOADING = "downloading"
STATE_PAUSED = "paused"
STATE_FAILED = "failed"
STATE_DONE = "done"
STATE_CANCELLED = "cancelled"

# How long a change to the queue waits for another process's change (each takes milliseconds).
QUEUE_LOCK_SECONDS = 10.0


class QueueWriteError(UserError):
    """The queue file could not be written or locked (a full or read-only disk); nothing was changed."""


class NewerQueueError(UserError):
    """The queue file was written by a newer LlamaDesk; it is left as it is."""


def process_tag(pid: int | None = None) -> str:
    """This process, in a way that a reused pid after a reboot cannot impersonate."""
    process = psutil.Process(pid or os.getpid())
    return f"{process.pid}:{process.create_time():.3f}"


def process_alive(tag: str) -> bool:
    try:
        pid_text, created = tag.split(":", 1)
        return process_tag(int(pid_text)) == f"{int(pid_text)}:{created}"
    except (ValueError, psutil.Error):
        return False


@dataclass
class DownloadJob:
    job_id: str
    repo_id: str
    quant: str
    revision: str  # the commit the file list came from, so every retry asks for the same bytes
    files: list[RemoteFile]
    endpoint: str
    state: str = STATE_QUEUED
    message: str = ""
    created_at: float = 0.0
    owner: str = ""  # the process downloading it right now, if any
    installed_path: str = ""
    # "pause" or "cancel" asked by another process; the owner acts on it within a second.
    stop_request: str = ""

    @property
    def name(self) -> str:
        return f"{self.repo_id} {self.quant}"

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def folder(self) -> str:
        return repo_folder_name(self.repo_id)

    def partial_path(self, remote: RemoteFile) -> Path:
        return app_paths().downloads_dir / self.folder / (remote.basename + PARTIAL_SUFFIX)

    def final_path(self, remote: RemoteFile) -> Path:
        return app_paths().models_dir / self.folder / remote.basename

    def bytes_on_disk(self) -> int:
        """How much is already here (partials and finished parts), for the queue's progress after a restart."""
        total = 0
        for remote in self.files:
            for path in (self.partial_path(remote), self.final_path(remote)):
                if path.is_file():
                    total += min(path.stat().st_size, remote.size)
                    break
        return total

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = [asdict(f) for f in self.files]
        return data

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DownloadJob:
        return cls(
            job_id=str(raw["job_id"]),
            repo_id=str(raw["repo_id"]),
            quant=str(raw["quant"]),
            revision=str(raw["revision"]),
            files=[RemoteFile(str(f["path"]), int(f["size"]), f.get("sha256")) for f in raw["files"]],
            endpoint=str(raw["endpoint"]),
            state=str(raw.get("state", STATE_QUEUED)),
            message=str(raw.get("message", "")),
            created_at=float(raw.get("created_at", 0.0)),
            owner=str(raw.get("owner", "")),
            installed_path=str(raw.get("installed_path", "")),
            stop_request=str(raw.get("stop_request", "")),
        )


class JobLock:
    """The OS-level lock on one model's download (its repository and quantization, which name its partials).

    Held from the claim to the install by the process downloading it; another process that cannot take it
    leaves the job and its files alone. The OS drops it when the holder dies, so a crash never leaves it stuck.
    """

    def __init__(self, job: DownloadJob) -> None:
        self.path = app_paths().downloads_dir / ".locks" / f"{job.folder}__{job.quant.upper()}.lock"
        # Not thread-local: the thread that claims a job is the one that releases it, but the window may ask
        # from another thread whether it is held.
        self._lock = FileLock(self.path, thread_local=False)

    def try_acquire(self) -> bool:
        """True when this process now holds the job; False when another process (or thread) holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        except OSError as exc:
            raise QueueWriteError(
                f"Could not create the lock file {self.path} ({exc.strerror or exc}). Check that the disk is "
                "not full or read-only, then try again."
            ) from exc
        return True

    def release(self) -> None:
        self._lock.release()


class DownloadQueue:
    """Every download not yet finished (and the finished ones until cleared), kept on disk.

    Each change takes the queue's OS-level lock, re-reads the file, applies itself and writes the file back
    atomically, so a window and terminal commands working at the same time neither erase each other's jobs nor
    both add the same one. A job left "downloading" by a process that no longer exists (a crash, a restart)
    reads as "queued": it resumes from its partial.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or app_paths().downloads_queue_file
        self._lock = threading.RLock()
        self._file_lock = FileLock(self.path.with_name(self.path.name + ".lock"))

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._file_lock.acquire(timeout=QUEUE_LOCK_SECONDS)
            except Timeout:
                raise QueueWriteError(
                    f"The list of downloads ({self.path}) stayed locked by another LlamaDesk window or command "
                    f"for {QUEUE_LOCK_SECONDS:.0f} s. Try again in a moment."
                ) from None
            except OSError as exc:
                raise self._write_error(exc) from exc
            try:
                yield
            finally:
                self._file_lock.release()

    def _write_error(self, exc: OSError) -> QueueWriteError:
        return QueueWriteError(
            f"Could not save the list of downloads to {self.path} ({exc.strerror or exc}). Free up some disk "
            "space (or check that the folder is writable), then try again; what was downloaded is kept."
        )

    def _load(self, for_change: bool) -> list[Any]:
        """The raw entries. A damaged file is set aside (its partials stay, and a new download of the same
        model continues from them); one from a newer LlamaDesk is read as well as can be, never rewritten."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            kept = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
            log.warning("The download list %s is unreadable (%s); moved aside to %s", self.path, exc, kept)
            with contextlib.suppress(OSError):
                os.replace(self.path, kept)
            return []
        if not isinstance(raw, dict) or not isinstance(raw.get("jobs", []), list):
            log.warning("Ignoring the download list %s: not a list of jobs", self.path)
            return []
        version = raw.get("version", QUEUE_VERSION)
        if (not isinstance(version, int) or version > QUEUE_VERSION) and for_change:
            raise NewerQueueError(
                f"The list of downloads ({self.path}) was written by a newer version of LlamaDesk, so this one "
                "leaves it alone. Update LlamaDesk, or move that file away to start a new list."
            )
        jobs: list[Any] = raw.get("jobs", [])
        return jobs

    def _read(self, for_change: bool = True) -> list[DownloadJob]:
        jobs = []
        for item in self._load(for_change):
            try:
                job = DownloadJob.from_dict(item)
            except (KeyError, TypeError, ValueError, AttributeError):
                log.warning("Skipping an unreadable download entry: %r", item)
                continue
            if job.state == STATE_DOWNLOADING and not (job.owner and process_alive(job.owner)):
                job.state = STATE_QUEUED
                job.owner = ""
            jobs.append(job)
        return jobs

    def _write(self, jobs: list[DownloadJob]) -> None:
        try:
            write_json_atomic(self.path, {"version": QUEUE_VERSION, "jobs": [job.to_dict() for job in jobs]})
        except OSError as exc:
            raise self._write_error(exc) from exc

    def jobs(self) -> list[DownloadJob]:
        """The jobs as they are on disk now (the file is replaced atomically, so no lock is needed to read)."""
        with self._lock:
            return self._read(for_change=False)

    def get(self, job_id: str) -> DownloadJob | None:
        return next((job for job in self.jobs() if job.job_id == job_id), None)

    def find(self, repo_id: str, quant: str) -> DownloadJob | None:
        """The unfinished job for this model, if any (so asking twice resumes instead of starting over)."""
        return _unfinished(self.jobs(), repo_id, quant)

    def add(self, job: DownloadJob) -> DownloadJob:
        with self._changing():
            jobs = self._read()
            existing = _unfinished(jobs, job.repo_id, job.quant)
            if existing is not None:
                return existing
            jobs.append(job)
            self._write(jobs)
            return job

    def update(
        self, job_id: str, only_if: Callable[[DownloadJob], bool] | None = None, **changes: Any
    ) -> DownloadJob | None:
        """Change a job (only when ``only_if(job)`` holds, if given); returns it as it is now, or None."""
        with self._changing():
            jobs = self._read()
            for index, job in enumerate(jobs):
                if job.job_id == job_id:
                    if only_if is not None and not only_if(job):
                        return job
                    jobs[index] = replace(job, **changes)
                    self._write(jobs)
                    return jobs[index]
            return None

    def remove(self, job_id: str) -> None:
        with self._changing():
            jobs = self._read()
            self._write([job for job in jobs if job.job_id != job_id])

    def next_queued(self, skip: frozenset[str] = frozenset()) -> DownloadJob | None:
        return next(
            (job for job in self.jobs() if job.state == STATE_QUEUED and job.job_id not in skip), None
        )


def _unfinished(jobs: list[DownloadJob], repo_id: str, quant: str) -> DownloadJob | None:
    for job in jobs:
        if (
            job.repo_id.lower() == repo_id.lower()
            and job.quant.upper() == quant.upper()
            and job.state not in (STATE_DONE, STATE_CANCELLED)
        ):
            return job
    return None
