"""The download queue on disk: shared between processes, and a job left by a dead process resumes."""

from __future__ import annotations

import subprocess
import sys

from app.core.models.downloads.queue import STATE_QUEUED, DownloadQueue
from tests.fixtures.fake_hub import FakeHub
from tests.helpers.downloads import (
    REPO,
    make_downloader,
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
