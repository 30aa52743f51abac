"""Ending a streamed reply at the first stop sequence, without ever sending a piece of the stop itself."""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    """Feed the reply's pieces; get back the text safe to send, and whether a stop sequence was reached.

    Text that could be the start of a stop sequence is held back until the next piece settles it, so a stop
    split across pieces is still found and none of it reaches the client.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [stop for stop in stops if stop]
        self._held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        text = self._held + piece
        self._held = ""
        first = min((i for i in (text.find(stop) for stop in self._stops) if i >= 0), default=-1)
        if first >= 0:
            self.stopped = True
            return text[:first]
        keep = self._longest_partial_stop(text)
        if keep:
            self._held = text[-keep:]
            return text[:-keep]
        return text

    def flush(self) -> str:
        """What was held back when the reply ended without reaching a stop."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _longest_partial_stop(self, text: str) -> int:
        """The length of the longest end of ``text`` that begins some stop sequence."""
        longest = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(text)), longest, -1):
                if stop.startswith(text[-length:]):
                    longest = length
                    break
        return longest
