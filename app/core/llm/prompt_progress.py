"""How long a prompt has left to read, and whether other programs are slowing it down: the figures behind
"Reading your message… 45% · about 12 s left · other programs are using the CPU, so this is slower".

A long prompt on a slow machine takes seconds to minutes before the first word, and a percentage alone says
nothing of how long the rest will take. ``PromptPace`` is fed the engine's ``prompt_progress(done, total)``
reports as they come and times the batches between them: each batch's tokens cost a little more than the one
before (every token attends to all before it), so the cost per token is fitted as a straight line over the
position and summed over what is left. There is no estimate before two reports: the first batch's start is
unknown (the request may have waited behind another, or restored a saved state first).

``CpuWatch`` tells whether other programs are using the CPUs this one runs on: the busy time of those CPUs,
less this process's own CPU time, over the last few seconds (psutil, on every platform it supports; None when
it cannot tell). The speed figures of the model menu assume an idle machine; this says when it is not.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

log = logging.getLogger(__name__)

OTHERS_BUSY_NOTE = "other programs are using the CPU, so this is slower"
# Other programs' use of this program's CPUs, in CPUs' worth, from which they slow it noticeably: half a CPU
# on a machine this program fills; on one it leaves partly free, a quarter of what it leaves (a desktop's
# browsers and indexers use a little all the time, which costs nothing to notice).
OTHERS_BUSY_FLOOR = 0.5
OTHERS_BUSY_SHARE_OF_FREE = 0.25
# The CPU is measured over the last few seconds: long enough to average a burst, short enough to follow it.
CPU_WINDOW_SECONDS = 3.0
CPU_SHORTEST_SECONDS = 0.5  # no figure from less: the kernel counts CPU time in 10 ms ticks
CPU_SAMPLE_EVERY_SECONDS = 0.25


def describe_time_left(seconds: float) -> str:
    """``seconds`` as a person reads an estimate: "a few seconds left", "about 12 s left", "about 25 s left"
    (5 s steps from 20 s), "about 3 min left", "about 2 h 10 min left" (10 min steps from 2 h)."""
    if seconds < 5:
        return "a few seconds left"
    if seconds < 20:
        return f"about {round(seconds)} s left"
    if seconds < 57.5:
        return f"about {5 * round(seconds / 5)} s left"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"about {max(1, minutes)} min left"
    hours, rest = divmod(10 * round(seconds / 600), 60)
    return f"about {hours} h left" if rest == 0 else f"about {hours} h {rest} min left"


@dataclass(frozen=True)
class _Batch:
    start: int  # prompt tokens read before the batch
    end: int  # and after it
    seconds: float


class PromptPace:
    """One prompt's reading speed, measured batch by batch from its progress reports, and the time left."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._batches: list[_Batch] = []
        self._last: tuple[int, float] | None = None  # tokens read at the last report, and when
        self.done = 0
        self.total = 0

    def read(self, done: int, total: int, at: float | None = None) -> None:
        """The engine reports ``done`` of ``total`` prompt tokens read (at ``at``, by this pace's clock)."""
        at = self._clock() if at is None else at
        if self._last is not None and done > self._last[0] and at > self._last[1]:
            self._batches.append(_Batch(self._last[0], done, at - self._last[1]))
        if self._last is None or done > self._last[0]:
            self._last = (done, at)
        self.done, self.total = done, total

    @property
    def measured(self) -> bool:
        """Whether a batch has been timed: before that there is no speed to estimate from."""
        return bool(self._batches)

    @property
    def tokens_per_second(self) -> float | None:
        """The average speed over the batches timed so far."""
        seconds = sum(b.seconds for b in self._batches)
        return sum(b.end - b.start for b in self._batches) / seconds if seconds > 0 else None

    def seconds_left(self, now: float | None = None) -> float | None:
        """Seconds until the whole prompt is read, counting down from the last report; None before a batch
        was timed, 0 once all is read."""
        if self._last is None or not self._batches:
            return None
        if self.done >= self.total:
            return 0.0
        at_report = self.cost(self.done, self.total)
        since = (self._clock() if now is None else now) - self._last[1]
        return max(0.0, at_report - max(0.0, since))

    def cost(self, start: int, end: int) -> float:
        """The seconds reading tokens ``start`` to ``end`` of this prompt takes, as measured so far."""
        if not self._batches or end <= start:
            return 0.0
        base, slope = self._cost_per_token_line()
        return base * (end - start) + slope * (end * end - start * start) / 2

    def _cost_per_token_line(self) -> tuple[float, float]:
        """Seconds per token as ``base + slope * position``, fitted to the batches (weighted by their tokens);
        a flat line at the average when there are too few batches or the fit slopes down."""
        tokens = [b.end - b.start for b in self._batches]
        seconds = sum(b.seconds for b in self._batches)
        average = seconds / sum(tokens)
        if len(self._batches) < 3:
            return average, 0.0
        middles = [(b.start + b.end) / 2 for b in self._batches]
        costs = [b.seconds / n for b, n in zip(self._batches, tokens, strict=True)]
        weight = sum(tokens)
        mean_x = sum(n * x for n, x in zip(tokens, middles, strict=True)) / weight
        mean_y = sum(n * y for n, y in zip(tokens, costs, strict=True)) / weight
        spread = sum(n * (x - mean_x) ** 2 for n, x in zip(tokens, middles, strict=True))
        if spread <= 0:
            return average, 0.0
        slope = (
            sum(n * (x - mean_x) * (y - mean_y) for n, x, y in zip(tokens, middles, costs, strict=True))
            / spread
        )
        base = mean_y - slope * mean_x
        if slope <= 0 or not math.isfinite(slope) or base + slope * self.done <= 0:
            return average, 0.0
        return base, slope


@dataclass(frozen=True)
class CpuShare:
    """How the CPUs this program may run on were used over ``seconds``, in CPUs' worth."""

    cpus: int  # the CPUs this program may run on
    own: float  # used by this program
    others: float  # used by every other program (and the system)
    seconds: float

    @property
    def others_busy(self) -> bool:
        """Whether other programs use enough of these CPUs to slow this program down."""
        free = max(0.0, self.cpus - self.own)
        return self.others >= max(OTHERS_BUSY_FLOOR, OTHERS_BUSY_SHARE_OF_FREE * free)


@dataclass(frozen=True)
class _CpuSample:
    at: float
    busy: float  # CPU seconds the watched CPUs were busy since boot
    own: float  # CPU seconds this process used since it started


class CpuWatch:
    """Samples the CPU time of the CPUs this process may run on, and its own, when asked; ``share()`` gives
    the use over the last few seconds, or None while it cannot tell (too soon, or a platform psutil does not
    measure). Cheap to ask often: it samples at most every quarter of a second."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._samples: list[_CpuSample] = []
        self._failed = False
        try:
            self._process: psutil.Process | None = psutil.Process()
            self._cpus = _watched_cpus(self._process)
        except (psutil.Error, OSError, NotImplementedError, AttributeError):
            log.debug("this platform does not tell which CPUs this process runs on", exc_info=True)
            self._process, self._cpus, self._failed = None, None, True
        self._sample()

    def share(self) -> CpuShare | None:
        """The use of this process's CPUs over the last ``CPU_WINDOW_SECONDS`` (at least the shortest)."""
        if self._failed:
            return None
        now = self._clock()
        if not self._samples or now - self._samples[-1].at >= CPU_SAMPLE_EVERY_SECONDS:
            self._sample()
        if len(self._samples) < 2:
            return None
        latest = self._samples[-1]
        # The oldest sample still needed: the newest one at least a window before the latest.
        while len(self._samples) > 2 and latest.at - self._samples[1].at >= CPU_WINDOW_SECONDS:
            self._samples.pop(0)
        first = self._samples[0]
        seconds = latest.at - first.at
        if seconds < CPU_SHORTEST_SECONDS:
            return None
        cpus = len(self._cpus) if self._cpus is not None else psutil.cpu_count() or 1
        own = max(0.0, (latest.own - first.own) / seconds)
        busy = max(0.0, (latest.busy - first.busy) / seconds)
        return CpuShare(cpus, min(own, cpus), min(cpus, max(0.0, busy - own)), seconds)

    def _sample(self) -> None:
        if self._process is None:
            return
        try:
            own = self._process.cpu_times()
            busy = _busy_seconds(self._cpus)
        except (psutil.Error, OSError, NotImplementedError, AttributeError, IndexError):
            log.debug("the CPU times cannot be read here", exc_info=True)
            self._failed = True
            return
        self._samples.append(_CpuSample(self._clock(), busy, own.user + own.system))


def _watched_cpus(process: psutil.Process) -> list[int] | None:
    """The CPUs ``process`` may run on, when that is fewer than all and each has its own line in the per-CPU
    times; None: all of them (macOS tells no affinity)."""
    affinity: Any = getattr(process, "cpu_affinity", None)
    if affinity is None:
        return None
    cpus = sorted(affinity())
    count = len(psutil.cpu_times(percpu=True))
    if len(cpus) >= count or any(cpu >= count for cpu in cpus):
        return None
    return list(cpus)


def _busy_seconds(cpus: list[int] | None) -> float:
    """Seconds the CPUs ``cpus`` (None: all) were busy since boot: everything but idle and waiting on disks.
    Linux counts a virtual machine's guest time inside user time too, so it is taken out once."""
    if cpus is None:
        times = [psutil.cpu_times()]
    else:
        every = psutil.cpu_times(percpu=True)
        times = [every[cpu] for cpu in cpus]
    busy = 0.0
    for cpu in times:
        counted = cpu._asdict()
        total = sum(counted.values()) - counted.get("guest", 0.0) - counted.get("guest_nice", 0.0)
        busy += total - counted.get("idle", 0.0) - counted.get("iowait", 0.0)
    return busy
