"""Download progress: what a download reports (bytes, speed, time left, phase) and the throttled tracker
that turns received bytes into those reports."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from app.core.models.downloads.queue import DownloadJob
from app.core.units import human_bytes, human_duration

PROGRESS_INTERVAL_SECONDS = 0.1
SPEED_WINDOW_SECONDS = 3.0


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


class ProgressTracker:
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
