"""One file's transfer against a real HTTP server on 127.0.0.1 (the fake hub): drops, stalls, a busy server,
a flipped byte, a full disk, and a cancel while the server is silent."""

from __future__ import annotations

import time

import pytest

from app.core.errors import Cancelled
from app.core.models.downloads.progress import DownloadProgress
from app.core.models.downloads.queue import DownloadQueue
from app.core.models.downloads.transfer import ChecksumMismatchError, NotEnoughDiskError
from tests.fixtures.fake_hub import FakeHub
from tests.helpers.downloads import (
    DATA,
    REPO,
    SIZE,
    SMALL,
    Background,
    downloaded,
    make_downloader,
    partial_of,
    wait_for,
)


def test_dropped_connection_resumes_with_range(hub: FakeHub) -> None:
    drop_at = int(SIZE * 0.4)
    hub.faults.drop_at_byte = drop_at
    downloader = make_downloader(hub)
    result = downloader.download(downloader.plan(REPO, "Q4_K_M"))

    assert result.path.read_bytes() == DATA
    ranges = [r.range_header for r in hub.range_requests()]
    assert ranges == [f"bytes={drop_at}-"]
    # At most 5% of the file sent twice.
    assert hub.body_bytes_sent() <= SIZE * 1.05


def test_a_stall_is_detected_and_retried(hub: FakeHub) -> None:
    hub.faults.stall_at_byte = SIZE // 3
    downloader = make_downloader(hub, stall_seconds=1.0)
    progress: list[DownloadProgress] = []
    started = time.perf_counter()
    result = downloader.download(downloader.plan(REPO, "Q4_K_M"), progress.append)

    assert result.path.read_bytes() == DATA
    assert time.perf_counter() - started >= 1.0
    assert hub.range_requests()[-1].range_header == f"bytes={SIZE // 3}-"
    waiting = [p.message for p in progress if p.phase == "waiting"]
    assert waiting and "no data for 1 s" in waiting[0]


def test_busy_server_is_retried_with_backoff(hub: FakeHub) -> None:
    hub.faults.fail_status = 503
    hub.faults.fail_count = 2
    downloader = make_downloader(hub)
    result = downloader.download(downloader.plan(REPO, "Q8_0"))
    assert result.path.read_bytes() == SMALL
    assert [r.status for r in hub.file_gets()] == [503, 503, 200]


def test_a_flipped_byte_is_refused_and_the_partial_deleted(hub: FakeHub) -> None:
    hub.faults.corrupt_byte_at = SIZE // 2
    downloader = make_downloader(hub)
    job = downloader.plan(REPO, "Q4_K_M")
    with pytest.raises(ChecksumMismatchError) as caught:
        downloader.download(job)

    assert "checksum" in str(caught.value) and "deleted" in str(caught.value)
    assert not partial_of(job).exists()
    assert not job.final_path(job.files[0]).exists()
    assert downloaded() == []


def test_cancel_during_a_stall_returns_within_two_seconds(hub: FakeHub) -> None:
    hub.faults.stall_at_byte = SIZE // 2
    downloader = make_downloader(hub, stall_seconds=30.0)
    job = downloader.enqueue(downloader.plan(REPO, "Q4_K_M"))
    running = Background(downloader, job.job_id)
    wait_for(lambda: partial_of(job).exists() and partial_of(job).stat().st_size == SIZE // 2)
    time.sleep(0.3)  # the reader is now blocked on a silent socket

    started = time.perf_counter()
    downloader.cancel(job.job_id)
    running.thread.join(5)
    latency = time.perf_counter() - started

    assert isinstance(running.error, Cancelled)
    assert latency < 2.0
    assert not partial_of(job).exists()
    assert DownloadQueue().jobs() == []
    print(f"\ncancel latency during a stall: {latency * 1000:.0f} ms")


def test_not_enough_disk_is_refused_before_starting(hub: FakeHub) -> None:
    hub.add_repo(
        "testorg/Huge-GGUF", {"Huge-Q4_K_M.gguf": SMALL}, advertised_sizes={"Huge-Q4_K_M.gguf": 10**15}
    )
    downloader = make_downloader(hub)
    job = downloader.plan("testorg/Huge-GGUF", "Q4_K_M")
    assert job.total_size == 10**15
    with pytest.raises(NotEnoughDiskError) as caught:
        downloader.download(job)
    message = str(caught.value)
    assert "needs 1000.0 TB of disk space" in message and "is free" in message
    assert "plus the 100.0 MB LlamaDesk leaves free" in message  # the reserve it counts is said
    assert hub.file_gets() == []  # refused before a single byte was asked for
