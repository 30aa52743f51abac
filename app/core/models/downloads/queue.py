"""The download queue: each job (a model's files, pinned to one commit) and its state, kept on disk.

The queue is JSON in ``app_paths().downloads_queue_file``, rewritten atomically after every change, so a window
and a terminal command share it and a restart finds every unfinished download.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from app.core.files import read_json, write_json_atomic
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
        )


class DownloadQueue:
    """Every download not yet finished (and the finished ones until cleared), kept on disk.

    Each change re-reads the file, applies itself and writes the file back atomically, so a window and a
    terminal command working at the same time do not erase each other's jobs. A job left "downloading" by a
    process that no longer exists (a crash, a restart) reads as "queued": it resumes from its partial.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or app_paths().downloads_queue_file
        self._lock = threading.RLock()

    def _read(self) -> list[DownloadJob]:
        raw = read_json(self.path)
        items = raw.get("jobs", []) if isinstance(raw, dict) else []
        jobs = []
        for item in items:
            try:
                job = DownloadJob.from_dict(item)
            except (KeyError, TypeError, ValueError):
                log.warning("Skipping an unreadable download entry: %r", item)
                continue
            if job.state == STATE_DOWNLOADING and not (job.owner and process_alive(job.owner)):
                job.state = STATE_QUEUED
                job.owner = ""
            jobs.append(job)
        return jobs

    def _write(self, jobs: list[DownloadJob]) -> None:
        write_json_atomic(self.path, {"version": QUEUE_VERSION, "jobs": [job.to_dict() for job in jobs]})

    def jobs(self) -> list[DownloadJob]:
        with self._lock:
            return self._read()

    def get(self, job_id: str) -> DownloadJob | None:
        return next((job for job in self.jobs() if job.job_id == job_id), None)

    def find(self, repo_id: str, quant: str) -> DownloadJob | None:
        """The unfinished job for this model, if any (so asking twice resumes instead of starting over)."""
        for job in self.jobs():
            if (
                job.repo_id.lower() == repo_id.lower()
                and job.quant.upper() == quant.upper()
                and job.state not in (STATE_DONE, STATE_CANCELLED)
            ):
                return job
        return None

    def add(self, job: DownloadJob) -> DownloadJob:
        with self._lock:
            existing = self.find(job.repo_id, job.quant)
            if existing is not None:
                return existing
            jobs = self._read()
            jobs.append(job)
            self._write(jobs)
            return job

    def update(self, job_id: str, **changes: Any) -> DownloadJob | None:
        with self._lock:
            jobs = self._read()
            for index, job in enumerate(jobs):
                if job.job_id == job_id:
                    jobs[index] = replace(job, **changes)
                    self._write(jobs)
                    return jobs[index]
            return None

    def remove(self, job_id: str) -> None:
        with self._lock:
            jobs = self._read()
            self._write([job for job in jobs if job.job_id != job_id])

    def next_queued(self) -> DownloadJob | None:
        return next((job for job in self.jobs() if job.state == STATE_QUEUED), None)
