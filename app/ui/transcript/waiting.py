"""What a reply's bubble says before its first word: that the message is being read, how far, how long is left,
and whether other programs are slowing it down.

A long prompt on a slow machine takes many seconds to evaluate; an empty bubble then looks like a hang, and a
percentage that stays at 98 % for a minute says nothing of why or for how long.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from app.core.llm.prompt_progress import OTHERS_BUSY_NOTE, CpuWatch, PromptPace, describe_time_left


def waiting_note(
    seconds: float,
    progress: tuple[int, int] | None,
    seconds_left: float | None = None,
    others_busy: bool = False,
) -> str:
    """The sentence for ``seconds`` since the request, with ``progress`` (prompt tokens done, total) if the
    engine has reported some. The percentage, and the time left once it is measured, show only while some of the
    prompt is still to read; without a time left, the seconds waited so far show instead."""
    note = "Reading your message…"
    reading = False
    if progress is not None:
        done, total = progress
        if total > 0 and done < total:
            reading = True
            note += f" {100 * done // total}%"
    if reading and seconds_left is not None:
        note += f" · {describe_time_left(seconds_left)}"
    elif seconds >= 1:
        note += f" · {int(seconds)} s"
    if others_busy:
        note += f" · {OTHERS_BUSY_NOTE}"
    return note


class WaitingLine:
    """One reply's wait before its first word: fed the engine's prompt progress, it times the batches and
    watches the CPU, and says it all in ``note()``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, cpu: CpuWatch | None = None) -> None:
        self._clock = clock
        self.asked = clock()
        self.pace = PromptPace(clock)
        self.progress: tuple[int, int] | None = None
        self.cpu = cpu if cpu is not None else CpuWatch()
        self.others_busy = False

    def read(self, done: int, total: int) -> None:
        """The engine reports ``done`` of the prompt's ``total`` tokens read."""
        self.pace.read(done, total)
        self.progress = (done, total)

    def note(self) -> str:
        now = self._clock()
        share = self.cpu.share()
        if share is not None:
            self.others_busy = share.others_busy
        return waiting_note(now - self.asked, self.progress, self.pace.seconds_left(now), self.others_busy)
