"""Noticing a reply that has started repeating itself, and where its first full telling ends.

Small models answering from document excerpts often fall into a loop: once they have copied a passage, the
passage itself becomes the likeliest continuation, and it comes back until the token limit or a person stops
it. A repeat penalty alone does not break it (the loop is made of ordinary words, each penalized a little), so
the reply is watched instead: when its last ``MIN_SPAN_CHARS`` characters have already appeared ``REPEATS``
times, it is looping, and what comes after the first copy of the repeated passage adds nothing.
"""

from __future__ import annotations

import re

MIN_SPAN_CHARS = 40
REPEATS = 3


class RepetitionGuard:
    """Fed a reply piece by piece; ``repeating`` turns true once the reply loops, and ``cut`` is then the
    length of the reply worth keeping (up to where the repeated passage begins its second copy)."""

    def __init__(self, min_span: int = MIN_SPAN_CHARS, repeats: int = REPEATS) -> None:
        self.min_span = min_span
        self.repeats = repeats
        self.text = ""
        self.cut: int | None = None

    @property
    def repeating(self) -> bool:
        return self.cut is not None

    def feed(self, piece: str) -> bool:
        """Add ``piece``; True once the reply repeats itself (and from then on)."""
        self.text += piece
        if self.cut is None and piece and len(self.text) >= self.min_span * self.repeats:
            self.cut = repeated_cut(self.text, self.min_span, self.repeats)
        return self.cut is not None

    def kept(self, text: str) -> str:
        """``text`` (the whole reply as recorded) without its repeated copies."""
        return text if self.cut is None else text[: self.cut].rstrip()


def repeated_cut(text: str, min_span: int = MIN_SPAN_CHARS, repeats: int = REPEATS) -> int | None:
    """Where the text worth keeping ends, when ``text`` ends inside a passage that has now appeared ``repeats``
    times: after one whole copy of the loop, at the end of its sentence. None when it does not loop.

    Only the tail is looked at: a loop always ends the text, while a phrase repeated on purpose earlier (a
    refrain, a table's separator line) is followed by something new. Counting copies of the tail without
    overlap makes a short loop ("ha ha ha ...") need ``repeats`` times ``min_span`` characters, like a long one.
    The loop starts where the text first matches itself one loop later; the cut is one loop after that,
    moved on to the end of its sentence (a loop's copies rarely begin at a sentence's start).
    """
    tail = text[-min_span:]
    if len(tail) < min_span or not tail.strip() or text.count(tail) < repeats:
        return None
    first = text.find(tail)
    second = text.find(tail, first + min_span)
    if second <= 0:
        return None
    period = second - first
    start = first
    while start > 0 and text[start - 1] == text[start - 1 + period]:
        start -= 1
    cut = start + period
    sentence_end = _SENTENCE_END.search(text, cut, cut + period)
    return sentence_end.end() if sentence_end else cut


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
