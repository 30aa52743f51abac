"""The downloads a front end runs in this process: each on a thread of its own, planned first when it is new,
paused or cancelled from any thread, and told through plain callbacks.

The controller owns the threads, so a view (the window's model manager) only shows what ``active()`` says and
what the callbacks tell: closing the view stops nothing, and a view opened later finds every download running.

Threads: every thread is a daemon. ``shutdown()`` asks each download to pause and returns at once; a
download ends on its own within a moment (its pause is written to the queue and its partial stays, to resume
next time), and one the process exits before is resumed from its partial all the same. ``wait()`` joins them,
for tests and the terminal, never for a GUI thread.

Callbacks are called on a download's thread, or on the caller's for a start, a pause or a cancel (never with a
lock held, so a callback may ask the controller anything):

- ``on_progress(DownloadProgress)``: a running download's bytes, speed and phase;
- ``on_changed()``: a download started, was planned, or ended; what ``active()`` and the queue say changed;
- ``on_installed(DownloadResult)``: a model was downloaded, verified and installed;
- ``on_failed(repo_id, sentence)``: a download of this repository could not start or stopped on an error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from app.core.errors import Cancelled, UserError
from app.core.models.downloads.downloader import Downloader, DownloadResult
from app.core.models.downloads.progress import DownloadProgress
from app.core.models.downloads.queue import STATE_DONE, DownloadJob

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveDownload:
    """A download this process is preparing or running."""

    repo_id: str
    quant: str  # as asked ("" when a file was asked by name); the job's own once it is planned
    job_id: str = ""  # "" while it is being planned
    progress: DownloadProgress | None = None  # the latest report, None until the first

    def is_model(self, repo_id: str, quant: str) -> bool:
        return self.repo_id.lower() == repo_id.lower() and self.quant.upper() == quant.upper()


def _ignore(*_args: object) -> None:
    return None


class DownloadController:
    """Starts, pauses, resumes and cancels downloads on threads of their own. See the module docstring."""

    def __init__(
        self,
        downloader: Downloader | None = None,
        *,
        on_progress: Callable[[DownloadProgress], None] = _ignore,
        on_changed: Callable[[], None] = _ignore,
        on_installed: Callable[[DownloadResult], None] = _ignore,
        on_failed: Callable[[str, str], None] = _ignore,
    ) -> None:
        self.downloader = downloader or Downloader()
        self._on_progress = on_progress
        self._on_changed = on_changed
        self._on_installed = on_installed
        self._on_failed = on_failed
        self._lock = threading.Lock()
        self._active: dict[int, ActiveDownload] = {}  # keyed by a number per start: a job id comes later
        self._threads: dict[int, threading.Thread] = {}
        self._next_key = 0
        self._failures: dict[str, str] = {}  # repo id (lower case) -> why its last download failed
        # job id -> "pause" or "cancel" asked while it runs here: asked again at its next report, in case the
        # download had not yet set up its own stop when it was asked first
        self._stops: dict[str, str] = {}
        self._closed = False

    # -- what is going on -----------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return self.downloader.endpoint

    def active(self) -> list[ActiveDownload]:
        """What this process is preparing or running now, in the order it was started."""
        with self._lock:
            return list(self._active.values())

    def running(self, job_id: str) -> bool:
        return any(download.job_id == job_id for download in self.active())

    def progress(self, job_id: str) -> DownloadProgress | None:
        return next((d.progress for d in self.active() if d.job_id == job_id), None)

    def active_for(self, repo_id: str, quant: str) -> ActiveDownload | None:
        """This model's download, if this process is preparing or running it."""
        return next((d for d in self.active() if d.is_model(repo_id, quant)), None)

    def failure(self, repo_id: str) -> str | None:
        """Why the last download of this repository failed, until it is started again."""
        with self._lock:
            return self._failures.get(repo_id.lower())

    def failures(self) -> dict[str, str]:
        """Every failure still standing: repository id (lower case) -> the sentence."""
        with self._lock:
            return dict(self._failures)

    def unfinished(self) -> list[DownloadJob]:
        """The queue's jobs not yet done (those of other windows and terminals too)."""
        return [job for job in self.downloader.queue.jobs() if job.state != STATE_DONE]

    def find(self, repo_id: str, quant: str) -> DownloadJob | None:
        """The queue's unfinished job for this model, if any."""
        return self.downloader.queue.find(repo_id, quant)

    # -- starting -------------------------------------------------------------------------------------------

    def start(
        self, repo_id: str, quant: str | None, filename: str | None = None, *, context_size: int = 4096
    ) -> None:
        """Continue this model's unfinished download, or plan a new one from the Hub's file list, and run it.
        Returns at once; a model already downloading here is left to its download."""
        with self._lock:
            self._failures.pop(repo_id.lower(), None)
        if quant and self.active_for(repo_id, quant) is not None:
            return
        planned = ActiveDownload(repo_id, (quant or "").upper())
        self._spawn(planned, lambda: self._plan(repo_id, quant, filename, context_size))

    def resume(self, job_id: str) -> None:
        """Run a paused or failed job of the queue again, from its partial. Returns at once."""
        if self.running(job_id):
            return
        job = self.downloader.queue.get(job_id)
        if job is None:
            self._on_changed()  # gone meanwhile (cancelled in a terminal): the view lists the queue again
            return
        with self._lock:
            self._failures.pop(job.repo_id.lower(), None)

        def resumed() -> DownloadJob:
            self.downloader.resume(job_id)
            return job

        self._spawn(ActiveDownload(job.repo_id, job.quant.upper(), job_id), resumed)

    def _plan(self, repo_id: str, quant: str | None, filename: str | None, context_size: int) -> DownloadJob:
        downloader = self.downloader
        existing = downloader.queue.find(repo_id, quant) if quant and not filename else None
        if existing is not None:
            return existing
        return downloader.enqueue(downloader.plan(repo_id, quant, filename, context_size=context_size))

    def _spawn(self, download: ActiveDownload, prepare: Callable[[], DownloadJob]) -> None:
        with self._lock:
            if self._closed:
                return
            key = self._next_key
            self._next_key += 1
            self._active[key] = download
            thread = threading.Thread(
                target=self._run, args=(key, prepare), name=f"download-{key}", daemon=True
            )
            self._threads[key] = thread
        thread.start()
        self._on_changed()

    # -- running (on the download's thread) -----------------------------------------------------------------

    def _run(self, key: int, prepare: Callable[[], DownloadJob]) -> None:
        repo_id = self._active[key].repo_id
        result: DownloadResult | None = None
        sentence = ""
        try:
            job = prepare()
            repo_id = job.repo_id
            if self._claim(key, job):
                result = self.downloader.download(job.job_id, lambda report: self._progress(key, report))
        except Cancelled:
            pass  # paused or cancelled: the queue says which, and the view shows it
        except UserError as exc:
            sentence = str(exc)
        except Exception as exc:
            log.exception("the download of %s failed", repo_id)
            sentence = f"The download failed unexpectedly ({exc}). Try again; the details are in the log."
        finally:
            with self._lock:
                ended = self._active.pop(key, None)
                self._threads.pop(key, None)
                if ended is not None:
                    self._stops.pop(ended.job_id, None)
                if sentence:
                    self._failures[repo_id.lower()] = sentence
            if result is not None:
                self._on_installed(result)
            if sentence:
                self._on_failed(repo_id, sentence)
            self._on_changed()

    def _claim(self, key: int, job: DownloadJob) -> bool:
        """Record the planned job as this start's; False when another thread here runs it already, or the
        controller was shut down while planning (the job stays in the queue, to resume next time)."""
        with self._lock:
            taken = any(d.job_id == job.job_id for k, d in self._active.items() if k != key)
            if taken or self._closed:
                return False
            self._active[key] = ActiveDownload(job.repo_id, job.quant.upper(), job.job_id)
        self._on_changed()
        return True

    def _progress(self, key: int, report: DownloadProgress) -> None:
        with self._lock:
            download = self._active.get(key)
            if download is not None:
                self._active[key] = replace(download, progress=report)
            stop = "pause" if self._closed else self._stops.get(report.job_id, "")
        if stop == "cancel":
            self.downloader.cancel(report.job_id)
        elif stop == "pause":
            self.downloader.pause(report.job_id)
        self._on_progress(report)

    # -- stopping -------------------------------------------------------------------------------------------

    def pause(self, job_id: str) -> None:
        """Stop, keeping the partial (``resume`` continues from it). Returns at once."""
        self._stop(job_id, "pause", self.downloader.pause)

    def cancel(self, job_id: str) -> None:
        """Stop and delete what was downloaded. Returns at once."""
        self._stop(job_id, "cancel", self.downloader.cancel)

    def toggle_pause(self, job_id: str) -> None:
        if self.running(job_id):
            self.pause(job_id)
        else:
            self.resume(job_id)

    def _stop(self, job_id: str, reason: str, stop: Callable[[str], None]) -> None:
        with self._lock:
            running = any(download.job_id == job_id for download in self._active.values())
            if running and self._stops.get(job_id) != "cancel":
                self._stops[job_id] = reason
        if running:
            stop(job_id)  # an event the download's thread acts on: its end is told by ``on_changed``
            return

        # Not running here: the queue and the partials are changed (or a request written for the process that
        # runs it), which takes the queue's lock; off the caller's thread, since another process may hold it.
        def stop_queued() -> None:
            try:
                stop(job_id)
            except UserError as exc:
                log.warning("could not stop the download %s: %s", job_id, exc)
            finally:
                self._on_changed()

        threading.Thread(target=stop_queued, name="download-stop", daemon=True).start()

    def shutdown(self) -> None:
        """Pause every download running here and start no more; returns at once (see the module docstring)."""
        with self._lock:
            self._closed = True
        self.downloader.pause_running()

    def wait(self, timeout: float | None = None) -> bool:
        """Join the download threads (tests and the terminal; never a GUI thread); False if some still run."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in threads)
