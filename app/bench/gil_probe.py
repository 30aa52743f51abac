"""Who holds Python's interpreter lock (the GIL) for long: a probe thread for the window benchmarks.

The probe sleeps 1 ms at a time. A wake-up much later than asked means another thread held the lock that long
without letting go (a long call into C that keeps it), or the CPU was busy elsewhere. At each late wake-up the
probe takes every other thread's stack (``sys._current_frames``): the thread that just let go is still at, or
right after, the line that held the lock. Late wake-ups are grouped by thread and line, so the report reads as
"this line, on this thread, held the lock N times, the worst for M ms".
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field

SLEEP_SECONDS = 0.001
# Frames of these files are the standard library's waiting (a thread idle in a queue or a lock), not work.
_IDLE_FILES = (
    "/threading.py",
    "/queue.py",
    "/selectors.py",
    "/concurrent/futures/thread.py",
    "/bench/gil_probe.py",
)


@dataclass(frozen=True)
class LateWake:
    """A wake-up ``seconds`` late at ``at`` (perf_counter), with the working threads' stacks at that moment."""

    at: float
    seconds: float
    stacks: dict[str, list[str]]  # thread name -> its frames, innermost last ("file:line function")


@dataclass
class GilProbe:
    """Start it, run the work, stop it; ``late`` holds every wake-up later than ``threshold_seconds``."""

    threshold_seconds: float = 0.015
    late: list[LateWake] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gil probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        own = threading.get_ident()
        while not self._stop.is_set():
            asked = time.perf_counter()
            time.sleep(SLEEP_SECONDS)
            woke = time.perf_counter()
            lateness = woke - asked - SLEEP_SECONDS
            if lateness >= self.threshold_seconds:
                self.late.append(LateWake(woke, lateness, _working_stacks(own)))

    def holders(self) -> list[tuple[str, int, float]]:
        """(thread and line, late wake-ups, the worst in seconds), the worst first."""
        counts: dict[str, int] = defaultdict(int)
        worst: dict[str, float] = defaultdict(float)
        for wake in self.late:
            for thread, frames in wake.stacks.items():
                key = f"{thread}: {' < '.join(reversed(frames[-3:]))}"
                counts[key] += 1
                worst[key] = max(worst[key], wake.seconds)
        return sorted(((key, counts[key], worst[key]) for key in counts), key=lambda row: -row[2])

    def report(self, top: int = 12) -> str:
        lines = [
            f"Interpreter-lock probe: {len(self.late)} wake-ups over {self.threshold_seconds * 1000:.0f} ms late; "
            "the threads at work at each, worst first:"
        ]
        lines += [
            f"  {worst * 1000:6.1f} ms  x{count:<4} {key}" for key, count, worst in self.holders()[:top]
        ]
        return "\n".join(lines)


def _working_stacks(own: int) -> dict[str, list[str]]:
    """Every thread's stack but the probe's own and those idle in the standard library's waits."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    stacks: dict[str, list[str]] = {}
    for ident, frame in sys._current_frames().items():
        if ident == own:
            continue
        summary = traceback.extract_stack(frame)
        if not summary or summary[-1].filename.endswith(_IDLE_FILES):
            continue
        frames = [f"{_short(entry.filename)}:{entry.lineno} {entry.name}" for entry in summary]
        stacks[names.get(ident, str(ident))] = frames
    return stacks


def _short(filename: str) -> str:
    for marker in ("/app/", "/site-packages/", "/lib/python"):
        at = filename.rfind(marker)
        if at >= 0:
            return filename[at + 1 :]
    return filename
