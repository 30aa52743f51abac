"""The downloader: plans a download from the Hub's file list, runs the queue, pauses, resumes and cancels,
and installs verified files into ``app_paths().models_dir``.

huggingface_hub does what it is good at here: URLs (``hf_hub_url``), the file list with LFS sha256
(``HfApi.model_info``), file metadata (``get_hf_file_metadata``), auth headers, the shared HTTP client (TLS
always verified, proxies from the environment) and its typed errors. It cannot resume across processes
(since 1.18 its ``.incomplete`` files are deleted on failure), cancel from another thread, or verify content,
so the transfer is owned here (``transfer.py``). Parts of a split model are all verified before any is moved,
and the first part (the one the inventory lists) is moved last.

Threading: ``download()`` blocks; run it on a worker thread. ``pause()`` and ``cancel()`` may be called from
any thread. Progress arrives through a plain callback on the downloading thread.

Processes: ``download()`` holds the job's OS-level lock (``JobLock``) from its claim to its install; another
process asking for the same job gets ``DownloadBusyError`` and touches nothing. A pause or cancel asked in a
process that does not hold the job is written into the queue, and the holder acts on it within a second.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.errors import Cancelled, UserError
from app.core.llm.saved_state_store import remember_model_digest
from app.core.models.catalog import (
    EmbeddingCatalogEntry,
    ModelFiles,
    RemoteFile,
    embedding_entry_for,
    find_entry,
    load_embedding_catalog,
)
from app.core.models.downloads.progress import ProgressCallback, ProgressTracker
from app.core.models.downloads.queue import (
    STATE_CANCELLED,
    STATE_DONE,
    STATE_DOWNLOADING,
    STATE_FAILED,
    STATE_PAUSED,
    STATE_QUEUED,
    DownloadJob,
    DownloadQueue,
    JobLock,
    QueueWriteError,
    process_tag,
)
from app.core.models.downloads.transfer import (
    BACKOFF_MAX_SECONDS,
    BACKOFF_START_SECONDS,
    CONNECT_TIMEOUT_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_STALL_SECONDS,
    FileTransfer,
    NotEnoughDiskError,
    RemoteChangedError,
    TransferControl,
    check_free_disk,
    sidecar_path,
    verify_on_disk,
)
from app.core.models.hardware import probe_hardware
from app.core.models.hub import (
    OFFLINE_SENTENCE,
    HubAccessError,
    HubUnavailableError,
    RepoListing,
    default_endpoint,
    fetch_listing,
    hub_error,
    offline_mode,
)
from app.core.models.menu import menu_row
from app.core.paths import app_paths

log = logging.getLogger(__name__)

METADATA_TIMEOUT_SECONDS = 15.0


class DownloadBusyError(UserError):
    """Another process (a window or a terminal) is downloading this job; nothing here was touched."""

    def __init__(self, job: DownloadJob) -> None:
        super().__init__(
            f"{job.name} is already being downloaded in another LlamaDesk window or terminal; it continues "
            "there. Pause it there first to continue it here."
        )


def remove_empty_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


@dataclass(frozen=True)
class DownloadResult:
    job: DownloadJob
    path: Path  # the file to load (the first part of a split model)
    bytes_transferred: int  # received over the network this time (less than the size after a resume)
    resumed_from: int  # bytes already on disk when this attempt started
    seconds: float


def _check_pinned(repo_id: str, option: ModelFiles, pins: Sequence[EmbeddingCatalogEntry]) -> None:
    """A file the catalog pins (the recommended embedding model) must be the very file pinned: the Hub's sha256
    for it is compared with the catalog's before a byte is fetched, and the download is then verified against it
    as every download is."""
    for remote in option.files:
        pinned = embedding_entry_for(repo_id, remote.path, pins)
        if pinned is None:
            continue
        if (remote.sha256 or "").lower() != pinned.sha256 or remote.size != pinned.size:
            raise HubAccessError(
                f"{remote.basename} in {repo_id} is not the file LlamaDesk knows (its size or sha256 differs "
                "from the one recorded in the catalog), so it was not downloaded. The repository may have "
                "replaced it; update LlamaDesk, or use an embedding model file you have (library add "
                "--embedding-model PATH)."
            )


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
    # Files whose sha256 the catalog pins (the embedding models it recommends).
    pins: Sequence[EmbeddingCatalogEntry] = field(default_factory=load_embedding_catalog)
    _controls: dict[str, TransferControl] = field(default_factory=dict, init=False, repr=False)
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
        _check_pinned(repo_id, option, self.pins)
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
        self._stop(job_id, "pause")

    def pause_running(self) -> None:
        """Pause every download this process is running (not those of other windows or terminals)."""
        with self._controls_lock:
            controls = list(self._controls.values())
        for control in controls:
            control.request("pause")

    def resume(self, job_id: str) -> None:
        """Put a paused or failed job back in line for ``run_queue`` (one downloading elsewhere is left as is)."""
        self.queue.update(
            job_id,
            only_if=lambda job: job.state != STATE_DOWNLOADING,
            state=STATE_QUEUED,
            message="",
            stop_request="",
        )

    def cancel(self, job_id: str) -> None:
        """Stop and delete what was downloaded. Returns at once; the download ends within a moment."""
        self._stop(job_id, "cancel")

    def _stop(self, job_id: str, reason: str) -> None:
        with self._controls_lock:
            control = self._controls.get(job_id)
        if control is not None:
            control.request(reason)
            return
        job = self.queue.get(job_id)
        if job is None:
            return
        lock = JobLock(job)
        if not lock.try_acquire():
            # Another process is downloading it: ask it through the queue; it stops within a second.
            self.queue.update(job_id, stop_request=reason)
            return
        try:
            if reason == "cancel":
                self._delete_partials(job)
                self.queue.remove(job_id)
            else:
                self.queue.update(
                    job_id,
                    only_if=lambda found: found.state not in (STATE_DONE, STATE_CANCELLED),
                    state=STATE_PAUSED,
                    stop_request="",
                )
        finally:
            lock.release()

    # -- running --------------------------------------------------------------------------------------------

    def download(self, job: DownloadJob | str, on_progress: ProgressCallback | None = None) -> DownloadResult:
        """Run one job to the end. Raises Cancelled when paused or cancelled (the job's state tells which),
        UserError for what a person can act on (disk, network, access, checksum, DownloadBusyError)."""
        job_id = job if isinstance(job, str) else self.enqueue(job).job_id
        current = self.queue.get(job_id)
        if current is None:
            raise UserError("That download is no longer in the list. Start it again from the model menu.")
        lock = JobLock(current)
        if not lock.try_acquire():
            raise DownloadBusyError(current)
        try:
            return self._download_claimed(job_id, on_progress)
        finally:
            lock.release()

    def _download_claimed(self, job_id: str, on_progress: ProgressCallback | None) -> DownloadResult:
        """``download`` once this process holds the job's lock: nothing else writes its files until it returns."""
        # Read again under the lock: the process that held it may have finished or cancelled the job meanwhile.
        current = self.queue.get(job_id)
        if current is None:
            raise UserError("That download is no longer in the list. Start it again from the model menu.")
        if current.state == STATE_DONE and Path(current.installed_path).is_file():
            return DownloadResult(current, Path(current.installed_path), 0, 0, 0.0)
        control = TransferControl(remote_request=lambda: self._stop_request(job_id))
        with self._controls_lock:
            if job_id in self._controls:
                raise UserError(f"{current.name} is already downloading.")
            self._controls[job_id] = control
        try:
            started = time.monotonic()
            tracker = ProgressTracker(current, on_progress)
            job = (
                self.queue.update(
                    job_id, state=STATE_DOWNLOADING, owner=process_tag(), message="", stop_request=""
                )
                or current
            )
            path, resumed_from = self._run_recorded(job, control, tracker)
        finally:
            with self._controls_lock:
                self._controls.pop(job_id, None)
        done = self._record(job_id, state=STATE_DONE, owner="", message="", installed_path=str(path)) or job
        tracker.report("done")
        return DownloadResult(done, path, tracker.transferred, resumed_from, time.monotonic() - started)

    def _run_recorded(
        self, job: DownloadJob, control: TransferControl, tracker: ProgressTracker
    ) -> tuple[Path, int]:
        """``_run``, with how it ended written into the queue (paused, cancelled, failed)."""
        job_id = job.job_id
        try:
            resumed_from = job.bytes_on_disk()
            return self._run(job, control, tracker), resumed_from
        except Cancelled:
            if control.reason == "cancel":
                self._delete_partials(job)
                with contextlib.suppress(UserError):
                    self.queue.remove(job_id)
                job.state = STATE_CANCELLED
            else:
                self._record(job_id, state=STATE_PAUSED, owner="", message="Paused.", stop_request="")
                job.state = STATE_PAUSED
            raise
        except RemoteChangedError:
            # The job's file list is stale: dropped, so asking again plans from the Hub's current files.
            self._delete_partials(job)
            with contextlib.suppress(UserError):
                self.queue.remove(job_id)
            raise
        except NotEnoughDiskError as exc:
            # Paused, not failed: once space is freed, resuming continues from the partial.
            self._record(job_id, state=STATE_PAUSED, owner="", message=str(exc), stop_request="")
            raise
        except UserError as exc:
            self._record(job_id, state=STATE_FAILED, owner="", message=str(exc), stop_request="")
            raise
        except BaseException:
            self._record(
                job_id,
                state=STATE_FAILED,
                owner="",
                message="The download failed unexpectedly.",
                stop_request="",
            )
            raise

    def _record(self, job_id: str, **changes: Any) -> DownloadJob | None:
        """Write how a download ended. When the queue cannot be written (the disk that just filled up holds it
        too), the sentence already on its way to the person matters more: the job reads as queued later,
        because its owner will have exited, and resumes from its partial."""
        try:
            return self.queue.update(job_id, **changes)
        except QueueWriteError as exc:
            log.warning("Could not record the download's state: %s", exc)
            return None

    def _stop_request(self, job_id: str) -> str:
        job = self.queue.get(job_id)
        return job.stop_request if job is not None else "cancel"

    def run_queue(
        self,
        on_progress: ProgressCallback | None = None,
        on_finished: Callable[[DownloadJob, DownloadResult | None, str], None] | None = None,
    ) -> None:
        """Download queued jobs one after another until none is left; a failure moves on to the next, and each
        job is tried once (one another process is downloading stays queued). ``on_finished(job, result,
        message)`` is called after each (result None when it did not finish)."""
        tried: set[str] = set()
        while (job := self.queue.next_queued(frozenset(tried))) is not None:
            tried.add(job.job_id)
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

    def _run(self, job: DownloadJob, control: TransferControl, tracker: ProgressTracker) -> Path:
        if offline_mode():
            raise HubUnavailableError(OFFLINE_SENTENCE)
        remaining = job.total_size - job.bytes_on_disk()
        check_free_disk(remaining, app_paths().downloads_dir, job.name)
        transfer = FileTransfer(
            endpoint=self.endpoint,
            stall_seconds=self.stall_seconds,
            max_attempts=self.max_attempts,
            backoff_start=self.backoff_start,
            backoff_max=self.backoff_max,
            connect_timeout=self.connect_timeout,
        )
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
            partials.append((remote, transfer.fetch(job, remote, control, tracker)))
            tracker.done_before_file += remote.size
            tracker.file_done = 0
        # Every part is read back from the disk right before the renames: what is checked is what is installed.
        tracker.done_before_file, tracker.file_done = 0, 0
        tracker.report("verifying")
        digests: dict[str, str] = {}
        for remote, partial in partials:
            tracker.file_name = remote.basename

            def hashed(count: int) -> None:
                tracker.file_done += count
                tracker.report("verifying", force=False)

            digests[remote.path] = verify_on_disk(remote, partial, control, hashed)
        tracker.done_before_file, tracker.file_done = job.total_size, 0
        tracker.report("installing")
        # The first part is what the library lists as a model, so it appears only once every part is there.
        for remote, partial in reversed(partials):
            final = job.final_path(remote)
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.replace(partial, final)
            sidecar_path(partial).unlink(missing_ok=True)
        remove_empty_dir(app_paths().downloads_dir / job.folder)
        model = job.final_path(job.files[0])
        remember_model_digest(model, digests[job.files[0].path])  # its saved states never hash it again
        return model

    def _delete_partials(self, job: DownloadJob) -> None:
        for remote in job.files:
            partial = job.partial_path(remote)
            partial.unlink(missing_ok=True)
            sidecar_path(partial).unlink(missing_ok=True)
        remove_empty_dir(app_paths().downloads_dir / job.folder)
