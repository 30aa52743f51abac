"""How fast a summary goes on this machine, and how long its rest will take, from what it has done so far.

A summary is a row of requests to the model (parts), each reading a prompt, then writing. The speeds are
learnt from the parts done; the part under way is measured too, while its prompt is read (batch by batch, as
the engine reports it) and while it is written (token by token), so that a document of one part, whose only
part takes minutes, shows how far it is and how long it has left instead of sitting at 0 %.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from app.core.llm.engine import ReplyStats
from app.core.llm.prompt_progress import PromptPace

# Writing a token costs about what reading five does (a small model near a full context: see SummarySettings):
# the cost of the words still to write before any has been timed on this machine.
WRITE_COST_IN_READ_TOKENS = 5
# Tokens written before the writing speed of the part under way counts: the first ones come in a burst.
TIMED_TOKENS = 3
# Of a part whose time left is not known yet, reading is taken for this share of its work.
READING_SHARE_UNTIMED = 0.5
# A part is never shown done before it ends: the model may write up to its limit.
MOST_SHARE_BEFORE_THE_END = 0.99


class PartPace:
    """The part under way: its prompt read (timed batch by batch) and its words written (token by token)."""

    def __init__(
        self, prompt_tokens: int, most_tokens: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self.started = clock()
        self.prompt_tokens = prompt_tokens  # until the engine reports how many it reads past its cache
        self.most_tokens = most_tokens
        self.reading = PromptPace(clock)
        self.read_seconds: float | None = None  # once it is read
        self.evaluated = 0
        self.generated = 0
        self.words = 0
        self._text = ""
        self._first_token: tuple[int, float] | None = None  # tokens written at the first timed one, and when
        self._last_token_at = 0.0
        self._share = 0.0

    def read(self, done: int, total: int) -> None:
        self.reading.read(done, total)
        self.prompt_tokens = total

    def wrote(self, piece: str, stats: ReplyStats) -> None:
        """``piece`` of text arrived; ``stats`` are the reply's own, counted as it streams."""
        now = self._clock()
        if self.read_seconds is None:
            self.read_seconds = stats.time_to_first_token or now - self.started
            self.evaluated = stats.evaluated_tokens
        self.generated = stats.generated_tokens
        if self._first_token is None:
            self._first_token = (self.generated, now)
        self._last_token_at = now
        self._text += piece
        self.words = len(self._text.split())

    @property
    def writing(self) -> bool:
        return self.read_seconds is not None

    @property
    def share_read(self) -> float | None:
        """The share of the prompt read, while it is read and the engine has said how far."""
        if self.writing or self.reading.total <= 0:
            return None
        return min(1.0, self.reading.done / self.reading.total)

    def read_seconds_per_token(self) -> float | None:
        if self.read_seconds is not None and self.evaluated > 0:
            return self.read_seconds / self.evaluated
        speed = self.reading.tokens_per_second
        return 1 / speed if speed else None

    def write_seconds_per_token(self) -> float | None:
        if self._first_token is None:
            return None
        tokens, at = self._first_token
        if self.generated - tokens < TIMED_TOKENS or self._last_token_at <= at:
            return None
        return (self._last_token_at - at) / (self.generated - tokens)

    def seconds_left(self, pace: SummaryPace) -> float | None:
        """The rest of this part: what is left to read, then to write (the words the parts before wrote, on
        average; at most its limit)."""
        write = pace.write_seconds_per_token()
        expected = pace.typical_tokens_written(self.most_tokens)
        if self.writing:
            if write is None:
                return None
            # Past the typical length, a few tokens more: it has not stopped yet.
            a_few_more = min(TIMED_TOKENS, self.most_tokens - self.generated)
            return write * max(expected - self.generated, a_few_more, 0)
        reading = self.reading.seconds_left()
        if reading is None:
            read = pace.read_seconds_per_token()
            if read is None:
                return None
            reading = read * max(0, self.prompt_tokens - self.reading.done)
        return reading + (write or 0.0) * expected

    def share_done(self, pace: SummaryPace) -> float:
        """How much of this part is done, by time when the time left is known, else by tokens; it never goes
        back, and reaches the end only when the part does."""
        left = self.seconds_left(pace)
        elapsed = self._clock() - self.started
        if left is not None and elapsed + left > 0:
            share = elapsed / (elapsed + left)
        elif self.writing:
            share = READING_SHARE_UNTIMED + (1 - READING_SHARE_UNTIMED) * self.generated / max(
                1, self.most_tokens
            )
        else:
            share = READING_SHARE_UNTIMED * (self.share_read or 0.0)
        self._share = max(self._share, min(MOST_SHARE_BEFORE_THE_END, share))
        return self._share


class SummaryPace:
    """This machine's reading and writing speeds, learnt from the parts done and the part under way."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.calls = 0
        self.evaluated = 0
        self.eval_seconds = 0.0
        self.generated = 0
        self.generate_seconds = 0.0
        self.part: PartPace | None = None

    def begin_part(self, prompt_tokens: int, most_tokens: int) -> PartPace:
        self.part = PartPace(prompt_tokens, most_tokens, self._clock)
        return self.part

    def end_part(self) -> None:
        self.part = None

    def record(self, stats: ReplyStats) -> None:
        """A part is done: its reading and writing times count from now on."""
        first = min(stats.time_to_first_token, stats.total_seconds)
        self.calls += 1
        self.evaluated += stats.evaluated_tokens
        self.eval_seconds += first
        self.generated += stats.generated_tokens
        self.generate_seconds += max(0.0, stats.total_seconds - first)

    def read_seconds_per_token(self) -> float | None:
        if self.evaluated and self.eval_seconds > 0:
            return self.eval_seconds / self.evaluated
        return self.part.read_seconds_per_token() if self.part is not None else None

    def write_seconds_per_token(self) -> float | None:
        if self.generated and self.generate_seconds > 0:
            return self.generate_seconds / self.generated
        written = self.part.write_seconds_per_token() if self.part is not None else None
        if written is not None:
            return written
        read = self.read_seconds_per_token()
        return read * WRITE_COST_IN_READ_TOKENS if read is not None else None

    def typical_tokens_written(self, most: int) -> int:
        """The tokens a part is expected to write: as many as the parts done wrote on average, else its limit."""
        if not self.calls:
            return most
        return min(most, math.ceil(self.generated / self.calls))

    def eta(self, prompt_tokens: int, calls: int, most_tokens: int) -> float | None:
        """Seconds for ``calls`` more parts reading ``prompt_tokens`` in all, the part under way included when
        there is one; None before any speed was measured."""
        read = self.read_seconds_per_token()
        if read is None:
            return None
        part = self.part
        current = 0.0
        if part is not None:
            left = part.seconds_left(self)
            if left is None:
                return None
            current = left
            calls = max(0, calls - 1)
            prompt_tokens = max(0, prompt_tokens - part.prompt_tokens)
        write = self.write_seconds_per_token() or 0.0
        return current + prompt_tokens * read + calls * self.typical_tokens_written(most_tokens) * write
