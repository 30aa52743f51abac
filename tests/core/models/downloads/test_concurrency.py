"""Downloads that meet each other or the disk: two processes resuming the same job, a partial changed on disk
before it is installed, and a disk that refuses more data mid-download. Real processes against the fake hub."""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import time
from pathlib import Path

import pytest

from app.core.errors import Cancelled
from app.core.models.downloads.progress import DownloadProgress
from app.core.models.downloads.queue import STATE_PAUSED, DownloadQueue
from app.core.models.downloads.transfer import ChecksumMismatchError
from app.core.paths import app_paths
from tests.fixtures.fake_hub import FakeHub
from tests.helpers.cli import llamadesk_command
from tests.helpers.downloads import (
    DATA,
    FILE,
    REPO,
    SIZE,
    Background,
    downloaded,
    make_downloader,
    wait_for,
)

ALREADY_RUNNING = "is already being downloaded in another LlamaDesk window or terminal"


def hub_env(hub: FakeHub, home: Path) -> dict[str, str]:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "LLAMADESK_HOME": str(home)}
    env.pop("HF_TOKEN", None)
    return env


def models(hub: FakeHub, home: Path, *args: str, file_limit: int | None = None) -> subprocess.Popen[str]:
    """``llamadesk models ARGS`` in its own process; ``file_limit`` caps the size of any file it writes."""

    def limit_file_size() -> None:  # runs in the child: its writes past the limit fail with EFBIG
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.Popen(
        llamadesk_command("models", *args),
        env=hub_env(hub, home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit_file_size,
    )


def partial_path() -> Path:
    return app_paths().downloads_dir / "testorg__Tiny-Instruct-GGUF" / (FILE + ".part")


def installed_path() -> Path:
    return app_paths().models_dir / "testorg__Tiny-Instruct-GGUF" / FILE


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return process.returncode, out, err


def test_two_processes_resuming_one_download_transfer_it_once(hub: FakeHub, llamadesk_home: Path) -> None:
    # A paused job with a quarter on disk, as the window's Pause leaves it.
    hub.faults.throttle_bytes_per_second = 4 * 1024 * 1024
    downloader = make_downloader(hub)
    job = downloader.enqueue(downloader.plan(REPO, "Q4_K_M"))
    window = Background(downloader, job.job_id)
    wait_for(lambda: partial_path().exists() and partial_path().stat().st_size >= SIZE // 4)
    downloader.pause(job.job_id)
    window.thread.join(5)
    assert isinstance(window.error, Cancelled) and DownloadQueue().jobs()[0].state == STATE_PAUSED
    kept = partial_path().stat().st_size
    hub.wait_for_bodies_to_end()
    sent_before = hub.body_bytes_sent()
    # The first resume holds the job part-way through its transfer until the other two have given up.
    hub.faults.throttle_bytes_per_second = None
    hub.faults.hold_at_byte = kept + SIZE // 8

    started = time.perf_counter()
    first = models(hub, llamadesk_home, "resume")
    try:
        hub.wait_for_hold()
    except AssertionError:
        first.kill()
        raise AssertionError(first.communicate()) from None
    # The second arrives while the first is transferring: as a resume and as a download of the same model.
    second = models(hub, llamadesk_home, "resume")
    third = models(hub, llamadesk_home, "download", f"{REPO}:Q4_K_M")
    racers = [finish(process) for process in (second, third)]
    hub.release_hold()
    results = [finish(first), *racers]
    seconds = time.perf_counter() - started

    for _code, _out, err in results:
        assert "Traceback" not in err, err
    (code, out, err) = results[0]
    assert code == 0, err
    assert Path(out.strip()) == installed_path()
    for code, out, err in results[1:]:
        assert ALREADY_RUNNING in err and code == 1 and out == "", err
    assert sha256_of(installed_path()) == hashlib.sha256(DATA).hexdigest()
    # One transfer: the bytes the hub sent since the pause are exactly the ones that were missing.
    assert hub.body_bytes_sent() - sent_before == SIZE - kept
    assert hub.range_requests()[-1].range_header == f"bytes={kept}-"
    assert len(hub.range_requests()) == 1
    (stored,) = DownloadQueue().jobs()
    assert stored.state == "done"
    print(f"\nthree racing processes, one transfer: {seconds:.1f} s, {hub.body_bytes_sent()} bytes sent")


def test_two_downloads_started_together_make_one_job(hub: FakeHub, llamadesk_home: Path) -> None:
    # Whichever takes the job first holds it part-way until the other has given up, however late it starts.
    hub.faults.hold_at_byte = SIZE // 2
    racers = [models(hub, llamadesk_home, "download", f"{REPO}:Q4_K_M") for _ in range(2)]
    hub.wait_for_hold()
    wait_for(lambda: any(process.poll() is not None for process in racers), timeout=120)
    hub.release_hold()
    results = [finish(process) for process in racers]
    codes = sorted(code for code, _out, _err in results)
    assert codes == [0, 1], results
    assert sum(ALREADY_RUNNING in err for _code, _out, err in results) == 1
    assert len(DownloadQueue().jobs()) == 1
    assert sha256_of(installed_path()) == hashlib.sha256(DATA).hexdigest()
    assert hub.body_bytes_sent() == SIZE


def test_a_partial_changed_on_disk_before_install_is_refused(hub: FakeHub) -> None:
    downloader = make_downloader(hub)
    job = downloader.plan(REPO, "Q4_K_M")

    def tamper(progress: DownloadProgress) -> None:
        # Another program writing into the partial after the last byte arrived, before it is moved into place.
        if progress.phase == "verifying":
            with partial_path().open("r+b") as handle:
                handle.seek(SIZE // 2)
                handle.write(b"\x00" * 16)

    with pytest.raises(ChecksumMismatchError) as caught:
        downloader.download(job, tamper)
    assert "does not match the checksum published" in str(caught.value)
    assert "not installed" in str(caught.value)
    assert not installed_path().exists() and downloaded() == []


def test_a_partial_grown_on_disk_before_install_is_refused(hub: FakeHub) -> None:
    downloader = make_downloader(hub)
    job = downloader.plan(REPO, "Q4_K_M")

    def append(progress: DownloadProgress) -> None:
        if progress.phase == "verifying":
            with partial_path().open("ab") as handle:
                handle.write(b"more")

    with pytest.raises(ChecksumMismatchError, match="not installed"):
        downloader.download(job, append)
    assert not installed_path().exists()


def test_a_full_disk_mid_download_pauses_with_a_sentence_and_resume_finishes(
    hub: FakeHub, llamadesk_home: Path
) -> None:
    limit = SIZE // 4
    full = models(hub, llamadesk_home, "download", f"{REPO}:Q4_K_M", file_limit=limit)
    code, out, err = finish(full)
    print(f"\nstderr when the disk refuses more data:\n{err}")
    assert code == 1 and out == ""
    assert "Traceback" not in err
    assert "refused to store more" in err and str(partial_path().parent) in err
    assert "100.0 MB" in err  # the reserve the check counts is in the sentence
    assert "llamadesk models resume" in err
    (job,) = DownloadQueue().jobs()
    assert job.state == STATE_PAUSED and "refused to store more" in job.message
    assert partial_path().stat().st_size == limit  # what arrived is kept

    resumed = models(hub, llamadesk_home, "resume")
    code, out, err = finish(resumed)
    assert code == 0, err
    assert sha256_of(Path(out.strip())) == hashlib.sha256(DATA).hexdigest()
    assert hub.range_requests()[-1].range_header == f"bytes={limit}-"


def test_a_full_disk_that_refuses_the_queue_file_too_is_a_sentence(
    hub: FakeHub, llamadesk_home: Path
) -> None:
    downloader = make_downloader(hub)
    downloader.enqueue(downloader.plan(REPO, "Q4_K_M"))
    queue_size = app_paths().downloads_queue_file.stat().st_size
    # Every file this process writes is capped below the queue file's size: no state can be saved at all.
    stuck = models(hub, llamadesk_home, "resume", file_limit=queue_size // 2)
    code, _out, err = finish(stuck)
    print(f"\nstderr when not even the queue can be written:\n{err}")
    assert code == 1 and "Traceback" not in err
    assert "Could not save the list of downloads" in err
    assert not installed_path().exists()
