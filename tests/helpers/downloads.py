"""A small repository on the fake hub and what the download tests do with it: a downloader with short
retries, a download on its own thread, and waiting for a file to grow."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.core.models.downloads.downloader import Downloader
from app.core.models.downloads.queue import DownloadJob, DownloadQueue
from app.core.models.inventory import installed_models
from tests.fixtures.fake_hub import FakeHub, use_fake_hub_only

REPO = "testorg/Tiny-Instruct-GGUF"
FILE = "Tiny-Instruct-Q4_K_M.gguf"
SIZE = 4 * 1024 * 1024
DATA = random.Random(5).randbytes(SIZE)
SMALL = random.Random(6).randbytes(256 * 1024)


def serve_tiny_repo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """The fake hub with one small repository (for a fixture: ``yield from serve_tiny_repo(...)``)."""
    use_fake_hub_only(monkeypatch, tmp_path)
    with FakeHub() as fake:
        fake.add_repo(REPO, {FILE: DATA, "Tiny-Instruct-Q8_0.gguf": SMALL, "README.md": b"# Tiny\n"})
        yield fake


def make_downloader(hub: FakeHub, **options: float) -> Downloader:
    # Backing off from 0.05 s to at most 0.4 s: the retry schedule's shape without its minutes.
    settings = {"backoff_start": 0.05, "backoff_max": 0.4, "stall_seconds": 10.0, **options}
    return Downloader(
        DownloadQueue(),
        endpoint=hub.url,
        stall_seconds=settings["stall_seconds"],
        backoff_start=settings["backoff_start"],
        backoff_max=settings["backoff_max"],
    )


def downloaded() -> list[Path]:
    return [m.path for m in installed_models() if m.source == "downloaded"]


def partial_of(job: DownloadJob) -> Path:
    return job.partial_path(job.files[0])


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


class Background:
    """A download running on its own thread, as the window runs it."""

    def __init__(self, downloader: Downloader, job_id: str) -> None:
        self.error: BaseException | None = None
        self.result: object = None
        self.thread = threading.Thread(target=self._run, args=(downloader, job_id), daemon=True)
        self.thread.start()

    def _run(self, downloader: Downloader, job_id: str) -> None:
        try:
            self.result = downloader.download(job_id)
        except BaseException as exc:
            self.error = exc
