"""The download queue on disk: shared between processes, a job left by a dead process resumes, and the\nneighbours of a race: a damaged or newer queue file, a pause from another process, a partial too large or\ndeleted, a file that changes on the server between resumes."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time

import pytest

from app.core.errors import Cancelled, UserError
from app.core.models.downloads.queue import STATE_PAUSED, STATE_QUEUED, DownloadQueue, NewerQueueError
from app.core.paths import app_paths
from tests.fixtures.fake_hub import FakeHub
from tests.helpers.downloads import (
    DATA,
    FILE,
    REPO,
    SIZE,
    Background,
    downloaded,
    make_downloader,
    partial_of,
    wait_for,
)


def test_an_interrupted_job_reads_as_queued_after_a_restart(hub: FakeHub) -> None:
    downloader = make_downloader(hub)
    job = downloader.enqueue(downloader.plan(REPO, "Q4_K_M"))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    DownloadQueue().update(job.job_id, state="downloading", owner=f"{dead.stdout.strip()}:12345.000")
    (restored,) = DownloadQueue().jobs()
    assert restored.state == STATE_QUEUED
    # Asking for the same model again finds the unfinished job instead of starting a second one.
    again = downloader.enqueue(downloader.plan(REPO, "Q4_K_M"))
    assert again.job_id == job.job_id and len(DownloadQueue().jobs()) == 1
    finished: list[str] = []
    downloader.run_queue(
        on_finished=lambda j, result, message: finished.append(j.job_id if result else message)
    )
    assert finished == [job.job_id]


def test_a_damaged_queue_file_is_set_aside_and_the_partial_still_resumes(hub: FakeHub) -> None:
    downloader = make_downloader(hub)
    job = downloader.enqueue(downloader.plan(REPO, "Q4_K_M"))
    hub.faults.drop_at_byte = SIZE // 3
    hub.faults.drops = 99  # every attempt dies at the same place: the job fails with a third on disk
    with pytest.raises(UserError):
        make_downloader(hub, backoff_start=0.001).download(job.job_id)
    queue_file = app_paths().downloads_queue_file
    queue_file.write_text('{"version": 1, "jobs": [{"job_id": ', encoding="utf-8")

    assert DownloadQueue().jobs() == []
    (kept,) = queue_file.parent.glob("downloads.json.damaged-*")
    assert kept.read_text(encoding="utf-8").startswith('{"version": 1')
    hub.faults.drop_at_byte = None
    result = downloader.download(downloader.plan(REPO, "Q4_K_M"))
    assert result.path.read_bytes() == DATA
    assert result.resumed_from == SIZE // 3  # the new job found the old job's partial


def test_a_queue_from_a_newer_version_is_read_but_never_rewritten(hub: FakeHub) -> None:
    downloader = make_downloader(hub)
    job = downloader.enqueue(downloader.plan(REPO, "Q4_K_M"))
    queue_file = app_paths().downloads_queue_file
    newer = json.loads(queue_file.read_text(encoding="utf-8"))
    newer["version"] = 99
    newer["jobs"][0]["a_field_from_the_future"] = [1, 2]
    queue_file.write_text(json.dumps(newer), encoding="utf-8")

    assert [j.job_id for j in DownloadQueue().jobs()] == [job.job_id]
    with pytest.raises(NewerQueueError, match="newer version of LlamaDesk"):
        downloader.download(job.job_id)
    assert json.loads(queue_file.read_text(encoding="utf-8")) == newer


def test_a_pause_asked_by_another_process_stops_the_owner(hub: FakeHub) -> None:
    # The transfer waits a quarter of the way in while the other process asks, however long it takes to start;
    # then it goes on slowly enough (6 s left) for the owner to notice the request part-way.
    hub.faults.hold_at_byte = SIZE // 4
    hub.faults.throttle_bytes_per_second = 512 * 1024
    downloader = make_downloader(hub)
    job = downloader.enqueue(downloader.plan(REPO, "Q4_K_M"))
    running = Background(downloader, job.job_id)
    hub.wait_for_hold()
    other = subprocess.run(
        [sys.executable, "-c", PAUSE_FROM_ANOTHER_PROCESS, job.job_id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 0, other.stderr
    started = time.perf_counter()
    hub.release_hold()
    running.thread.join(10)
    latency = time.perf_counter() - started
    assert isinstance(running.error, Cancelled)
    (paused,) = DownloadQueue().jobs()
    assert paused.state == STATE_PAUSED and paused.stop_request == ""
    assert 0 < partial_of(job).stat().st_size < SIZE
    assert latency < 5.0  # the owner looks for requests once a second
    print(f"\npause from another process took effect {latency * 1000:.0f} ms after it was asked")


PAUSE_FROM_ANOTHER_PROCESS = """
import sys
from app.core.models.downloads.downloader import Downloader
Downloader().pause(sys.argv[1])
"""


def test_a_partial_larger_than_the_file_starts_over(hub: FakeHub) -> None:
    downloader = make_downloader(hub)
    job = downloader.enqueue(downloader.plan(REPO, "Q4_K_M"))
    with pytest.raises(UserError):  # leave a sidecar that matches, as an interrupted attempt does
        hub.faults.fail_status, hub.faults.fail_count = 404, 1
        downloader.download(job.job_id)
    partial_of(job).write_bytes(DATA + b"extra bytes from somewhere")
    downloader.resume(job.job_id)
    result = downloader.download(job.job_id)
    assert result.path.read_bytes() == DATA and result.bytes_transferred == SIZE


def test_a_file_that_changes_on_the_server_between_resumes_is_refused_early(hub: FakeHub) -> None:
    hub.faults.throttle_bytes_per_second = 4 * 1024 * 1024
    downloader = make_downloader(hub)
    job = downloader.enqueue(downloader.plan(REPO, "Q4_K_M"))
    running = Background(downloader, job.job_id)
    wait_for(lambda: partial_of(job).exists() and partial_of(job).stat().st_size > SIZE // 4)
    downloader.pause(job.job_id)
    running.thread.join(5)
    # The same URL now serves other bytes (a force-push that kept the commit id, a misbehaving mirror).
    changed = bytes(reversed(DATA))
    served = hub.repos[REPO].files[FILE]
    served.source, served.sha256 = changed, hashlib.sha256(changed).hexdigest()
    hub.faults.throttle_bytes_per_second = None

    # Refused by the response's ETag, before a byte of the other file is stored (the checksum at the end would
    # say "does not match"), and the job dropped so that asking again plans from the Hub's current files.
    with pytest.raises(UserError, match="changed on the Hugging Face Hub since this download was planned"):
        downloader.download(job.job_id)
    assert not partial_of(job).exists() and DownloadQueue().jobs() == []
    assert downloaded() == []


def test_a_job_whose_partial_folder_was_deleted_starts_over(hub: FakeHub) -> None:
    hub.faults.throttle_bytes_per_second = 4 * 1024 * 1024
    downloader = make_downloader(hub)
    job = downloader.enqueue(downloader.plan(REPO, "Q4_K_M"))
    running = Background(downloader, job.job_id)
    wait_for(lambda: partial_of(job).exists() and partial_of(job).stat().st_size > SIZE // 4)
    downloader.pause(job.job_id)
    running.thread.join(5)
    shutil.rmtree(partial_of(job).parent)
    hub.faults.throttle_bytes_per_second = None
    downloader.resume(job.job_id)
    result = downloader.download(job.job_id)
    assert result.path.read_bytes() == DATA and result.resumed_from == 0
