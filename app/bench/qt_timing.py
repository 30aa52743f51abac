"""What the window benchmarks time with: a 10 ms timer on the GUI thread that records the gaps between its
ticks (a blocked GUI thread shows as a gap), and running the event loop until a condition holds."""

from __future__ import annotations

import time
from collections.abc import Callable


class GapTimer:
    """A 10 ms timer on the GUI thread recording the time between its ticks; a blocked thread shows as a gap.

    Each gap is filed under the phase named last (``mark``), so a report can say during what the worst one
    happened."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.gaps: list[float] = []
        self.phases: list[str] = []  # the phase of each gap, as ``gaps``
        self.phase = ""
        self._last = time.perf_counter()
        self._timer = QTimer()
        self._timer.setInterval(10)
        self._timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self._last)
        self.phases.append(self.phase)
        self._last = now

    def mark(self, phase: str) -> None:
        """Gaps from the next tick on belong to ``phase`` (the gap under way ends in it, so it is its)."""
        self.phase = phase

    def start(self) -> None:
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    @property
    def worst(self) -> float:
        """The longest gap, leaving out the first (it includes the start-up before the loop ran)."""
        return max(self.gaps[1:], default=0.0)

    def worst_by_phase(self) -> dict[str, float]:
        """The longest gap of each phase, in the order the phases came, leaving out the first gap."""
        worst: dict[str, float] = {}
        for gap, phase in zip(self.gaps[1:], self.phases[1:], strict=True):
            worst[phase] = max(worst.get(phase, 0.0), gap)
        return worst


def run_until(condition: Callable[[], bool], limit_seconds: float) -> None:
    """Run the Qt event loop, as the application does, until ``condition`` holds or the time is up."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(5)
    poll.timeout.connect(lambda: loop.quit() if condition() else None)
    deadline = QTimer()
    deadline.setSingleShot(True)
    deadline.timeout.connect(loop.quit)
    poll.start()
    deadline.start(int(limit_seconds * 1000))
    if not condition():
        loop.exec()
    poll.stop()
    deadline.stop()
