"""``llamadesk bench --gui``: how long the GUI thread ever waits while the real model loads and answers.

A 10 ms timer on the GUI thread records the gap between its ticks; any work that blocked the thread (a
synchronous call into the engine, a slow repaint) shows up as a long gap. Target: the worst gap < 50 ms.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class GuiBenchResult:
    ticks: int
    worst_gap_ms: float
    p99_gap_ms: float
    median_gap_ms: float
    load_seconds: float
    reply_tokens: int
    reply_tokens_per_second: float

    def report(self) -> str:
        return "\n".join(
            [
                f"GUI-thread timer: {self.ticks} ticks at 10 ms while loading and generating",
                f"  worst gap {self.worst_gap_ms:.1f} ms   (target < 50 ms)",
                f"  99th percentile {self.p99_gap_ms:.1f} ms, median {self.median_gap_ms:.1f} ms",
                f"Model load {self.load_seconds:.2f} s; reply {self.reply_tokens} tokens at "
                f"{self.reply_tokens_per_second:.1f} tokens/s",
            ]
        )


class GapTimer:
    """A 10 ms timer on the GUI thread recording the time between its ticks; a blocked thread shows as a gap."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.gaps: list[float] = []
        self._last = time.perf_counter()
        self._timer = QTimer()
        self._timer.setInterval(10)
        self._timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self._last)
        self._last = now

    def start(self) -> None:
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    @property
    def worst(self) -> float:
        """The longest gap, leaving out the first (it includes the start-up before the loop ran)."""
        return max(self.gaps[1:], default=0.0)


def run_gui_benchmark(model: Path, context_size: int = 2048) -> GuiBenchResult:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.core.history import HistoryStore
    from app.core.settings import Settings
    from app.ui.main_window import MainWindow

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([])
    timer = GapTimer()
    timer.start()

    def wait(condition: object, limit: float = 300) -> None:
        deadline = time.monotonic() + limit
        while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
            app.processEvents()
            time.sleep(0.001)

    settings = Settings(
        context_size=context_size, last_model=str(model), mode_overrides={"chat": {"max_tokens": 300}}
    )
    started = time.perf_counter()
    window = MainWindow(settings=settings, store=HistoryStore())
    window.show()
    wait(lambda: window.client.model is not None)
    load_seconds = time.perf_counter() - started
    window.input.setPlainText(
        "Write a story about a lighthouse keeper and a storm, with a title in Markdown."
    )
    window.send()
    wait(lambda: not window.client.is_generating)
    timer.stop()
    gaps = timer.gaps
    stats = window._last_stats
    window.close()
    measured = sorted(gaps[1:])
    return GuiBenchResult(
        ticks=len(measured),
        worst_gap_ms=measured[-1] * 1000,
        p99_gap_ms=measured[int(len(measured) * 0.99) - 1] * 1000,
        median_gap_ms=statistics.median(measured) * 1000,
        load_seconds=load_seconds,
        reply_tokens=stats.generated_tokens if stats else 0,
        reply_tokens_per_second=stats.tokens_per_second if stats else 0.0,
    )
