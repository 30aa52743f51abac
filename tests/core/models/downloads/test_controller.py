"""The controller a window runs its downloads with: real threads downloading from the fake hub on 127.0.0.1,
told through plain callbacks; pause, resume and cancel return at once; shutting down waits for no download."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from filelock import FileLock

from app.core.models.downloads.controller import DownloadController
from app.core.models.downloads.downloader import DownloadResult
from app.core.models.downloads.progress import DownloadProgress
from app.core.models.downloads.queue import STATE_PAUSED, DownloadQueue
from app.core.paths import app_paths
from tests.fixtures.fake_hub import FakeHub
from tests.helpers.downloads import DATA, FILE, REPO, SIZE, make_downloader, partial_of, wait_for


class Told:
    """What the controller's callbacks said, from whichever thread they were called on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.progress: list[DownloadProgress] = []
        self.changes = 0
        self.installed: list[DownloadResult] = []
        self.failed: list[tuple[str, str]] = []
        self.threads: set[str] = set()

    def controller(self, hub: FakeHub) -> DownloadController:
        return DownloadController(
            make_downloader(hub),
            on_progress=self.on_progress,
            on_changed=self.on_changed,
            on_installed=self.on_installed,
            on_failed=self.on_failed,
        )

    def on_progress(self, report: DownloadProgress) -> None:
        with self.lock:
            self.progress.append(report)
            self.threads.add(threading.current_thread().name)

    def on_changed(self) -> None:
        with self.lock:
            self.changes += 1

    def on_installed(self, result: DownloadResult) -> None:
        with self.lock:
            self.installed.append(result)

    def on_failed(self, repo_id: str, sentence: str) -> None:
        with self.lock:
            self.failed.append((repo_id, sentence))


def test_a_download_runs_on_a_thread_of_its_own_and_is_told_through_the_callbacks(hub: FakeHub) -> None:
    told = Told()
    controller = told.controller(hub)
    hub.faults.throttle_bytes_per_second = 8 * 1024 * 1024
    started = time.perf_counter()
    controller.start(REPO, "Q4_K_M")
    returned = time.perf_counter() - started
    (preparing,) = controller.active()  # planned on the download's thread: no job yet
    assert (preparing.repo_id, preparing.quant) == (REPO, "Q4_K_M")
    controller.start(REPO, "q4_k_m")  # asked twice: one download
    wait_for(lambda: bool(told.installed), timeout=60)
    assert controller.wait(10)
    (result,) = told.installed
    assert result.path.read_bytes() == DATA and result.path.name == FILE
    assert returned < 1.0  # planning asks the Hub: not on the caller's thread
    assert not told.failed and controller.active() == []
    assert len(hub.file_gets()) == 1
    assert told.progress[-1].phase == "done" and any(0 < p.done_bytes < SIZE for p in told.progress)
    assert told.threads and threading.main_thread().name not in told.threads
    assert told.changes >= 3  # started, planned, ended
    assert controller.unfinished() == []


def test_pause_resume_and_cancel_return_at_once(hub: FakeHub) -> None:
    told = Told()
    controller = told.controller(hub)
    hub.faults.throttle_bytes_per_second = 1024 * 1024
    controller.start(REPO, "Q4_K_M")
    wait_for(lambda: any(p.done_bytes > 256 * 1024 for p in told.progress))
    (running,) = controller.active()
    assert controller.running(running.job_id) and controller.progress(running.job_id) is not None

    controller.pause(running.job_id)
    assert controller.wait(10)
    (job,) = DownloadQueue().jobs()
    assert job.state == STATE_PAUSED and not controller.running(job.job_id)
    kept = partial_of(job).stat().st_size
    assert 0 < kept < SIZE

    controller.toggle_pause(job.job_id)  # resume: from the partial
    wait_for(lambda: bool(hub.range_requests()))
    assert hub.range_requests()[-1].range_header == f"bytes={kept}-"
    wait_for(lambda: controller.progress(job.job_id) is not None)
    controller.cancel(job.job_id)
    assert controller.wait(10)
    assert DownloadQueue().jobs() == [] and not partial_of(job).exists()
    assert not told.failed and not told.installed


def test_a_failure_is_told_and_remembered_until_the_next_try(hub: FakeHub) -> None:
    told = Told()
    controller = told.controller(hub)
    controller.start("testorg/Not-There-GGUF", "Q4_K_M")
    wait_for(lambda: bool(told.failed))
    assert controller.wait(10)
    ((repo_id, sentence),) = told.failed
    print(f"\n{sentence}")
    assert repo_id == "testorg/Not-There-GGUF" and sentence
    assert "Traceback" not in sentence and "Errno" not in sentence
    assert controller.failure("testorg/not-there-gguf") == sentence
    hub.add_repo("testorg/Not-There-GGUF", {"Not-There-Q4_K_M.gguf": DATA[:1000]})
    controller.start("testorg/Not-There-GGUF", "Q4_K_M")
    assert controller.failure("testorg/Not-There-GGUF") is None
    wait_for(lambda: bool(told.installed))
    assert controller.wait(10)


def test_shutting_down_asks_each_download_to_pause_and_waits_for_none(hub: FakeHub) -> None:
    told = Told()
    controller = told.controller(hub)
    hub.faults.throttle_bytes_per_second = 1024 * 1024
    controller.start(REPO, "Q4_K_M")
    wait_for(lambda: any(p.done_bytes > 256 * 1024 for p in told.progress))
    # Another process holds the queue: the paused download cannot write its state until it lets go.
    queue_lock = FileLock(str(DownloadQueue().path) + ".lock")
    with queue_lock:
        started = time.perf_counter()
        controller.shutdown()
        returned = time.perf_counter() - started
        time.sleep(0.5)
        assert controller.active(), "the download waits for the queue on its own thread"
    print(f"\nshutdown() returned in {returned * 1000:.1f} ms")
    assert returned < 0.5
    assert controller.wait(20)
    (job,) = DownloadQueue().jobs()
    assert job.state == STATE_PAUSED
    kept = partial_of(job).stat().st_size
    assert 0 < kept < SIZE
    controller.start(REPO, "Q4_K_M")  # shut down: nothing more starts
    assert controller.active() == []

    # The next start (a new window) continues from the partial.
    again = Told().controller(hub)
    hub.faults.throttle_bytes_per_second = None
    again.start(REPO, "Q4_K_M")
    assert again.wait(30)
    assert hub.range_requests()[-1].range_header == f"bytes={kept}-"
    installed = app_paths().models_dir / "testorg__Tiny-Instruct-GGUF" / FILE
    assert Path(installed).read_bytes() == DATA
