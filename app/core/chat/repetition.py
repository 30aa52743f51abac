"""Noticing a reply that has started repeating itself, and where its first full telling ends.

Small models answering from document excerpts often fall into a loop: once they have copied a passage, the
passage itself becomes the likeliest continuation, and it comes back until the token limit or a person stops
it. A repeat penalty alone does not break it (the loop is made of ordinary words, each penalized a little), so
the reply is watched instead: when its last ``MIN_SPAN_CHARS`` characters have already appeared ``REPEATS``
times, it is looping, and what comes after the first copy of the repeated passage adds nothing.

A person may ask for repetition ("write this sentence five times"). The count in the question
(``requested_copies``) is then allowed, and one more for a model that miscounts: such a reply is stopped only
once a passage has two whole copies more than were asked for, and the copies asked for are kept.
"""

from __future__ import annotations

import re

MIN_SPAN_CHARS = 40
REPEATS = 3
# A larger count is not a request to hold a reply to (the token limit bounds the reply anyway).
MAX_REQUESTED_COPIES = 100


class RepetitionGuard:
    """Fed a reply piece by piece; ``repeating`` turns true once the reply loops, and ``cut`` is then the
    length of the reply worth keeping (up to where the repeated passage begins its copy after the last one
    worth keeping: the first, or the ``requested`` copies the person asked for)."""

    def __init__(self, min_span: int = MIN_SPAN_CHARS, repeats: int = REPEATS, requested: int = 1) -> None:
        self.min_span = min_span
        self.repeats = repeats
        self.requested = requested
        self.text = ""
        self.cut: int | None = None

    @property
    def repeating(self) -> bool:
        return self.cut is not None

    def feed(self, piece: str) -> bool:
        """Add ``piece``; True once the reply repeats itself (and from then on)."""
        self.text += piece
        if self.cut is None and piece and len(self.text) >= self.min_span * self.repeats:
            self.cut = repeated_cut(self.text, self.min_span, self.repeats, self.requested)
        return self.cut is not None

    def kept(self, text: str) -> str:
        """``text`` (the whole reply as recorded) without its repeated copies."""
        return text if self.cut is None else text[: self.cut].rstrip()


def repeated_cut(
    text: str, min_span: int = MIN_SPAN_CHARS, repeats: int = REPEATS, requested: int = 1
) -> int | None:
    """Where the text worth keeping ends, when ``text`` ends inside a passage that has now appeared ``repeats``
    times: after one whole copy of the loop, at the end of its sentence. None when it does not loop.

    Only the tail is looked at: a loop always ends the text, while a phrase repeated on purpose earlier (a
    refrain, a table's separator line) is followed by something new. Counting copies of the tail without
    overlap makes a short loop ("ha ha ha ...") need ``repeats`` times ``min_span`` characters, like a long one.
    The loop starts where the text first matches itself one loop later; the cut is one copy of the shortest
    passage it repeats after that, moved on to the end of its sentence (a loop's copies rarely begin at a
    sentence's start).

    With ``requested`` copies asked for (more than one), the loop must also hold ``requested`` + 2 whole copies
    of its passage, and the cut keeps ``requested`` of them.
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
    # The tail's copies may hold several copies of a short passage (a 26-character sentence repeats every 52
    # characters of a 40-character tail): the passage is the shortest unit the loop repeats. Copies of the tail
    # with different text between them are no strict loop; their period is the unit.
    loop = text[start:]
    divisors = (p for p in range(1, period) if period % p == 0)
    unit = next((p for p in divisors if loop[p:] == loop[:-p]), period)
    kept_copies = 1
    if requested > 1:
        if len(loop) // unit < requested + 2:
            return None
        kept_copies = requested
    cut = start + unit * kept_copies
    # A copy that ends its sentence ends the kept text there, rather than at the end of the next copy's first
    # sentence.
    while cut > start and text[cut - 1].isspace():
        cut -= 1
    sentence_end = _SENTENCE_END.search(text, max(cut - 1, 0), cut + unit)
    return sentence_end.end() if sentence_end else cut


def requested_copies(question: str) -> int:
    """How many copies of something ``question`` asks for ("five times", "3 copies", "twice"); 1 when it
    names no count. Only a number with a word of repetition counts: "the 3 largest costs in 2023" asks for
    no repetition."""
    counts = [1]
    for match in _COUNT.finditer(question.lower()):
        number = match.group("number")
        if number is not None:
            counts.append(int(number) if number.isdigit() else _number_in_words(number))
        else:
            counts.append(_ADVERBS[match.group("adverb")])
    return min(max(counts), MAX_REQUESTED_COPIES)


def _number_in_words(words: str) -> int:
    total = 0
    for word in re.split(r"[\s-]+", words):
        if word in _MULTIPLIERS:  # "a dozen", "two hundred"
            total = max(total, 1) * _MULTIPLIERS[word]
        else:
            total += _NUMBER_WORDS.get(word, 0)  # "and" adds nothing
    return total


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
_NUMBER_WORDS = {
    "a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_MULTIPLIERS = {"dozen": 12, "hundred": 100}
_ADVERBS = {"once": 1, "twice": 2, "thrice": 3}
_WORD = "(?:" + "|".join([*_NUMBER_WORDS, *_MULTIPLIERS]) + ")"
# A count, then a word of repetition: "5 times", "twenty-five copies", "a dozen more times", or an adverb.
_COUNT = re.compile(
    rf"\b(?:(?P<number>\d{{1,6}}|{_WORD}(?:[\s-]+(?:and[\s-]+)?{_WORD})*)\s+(?:more\s+|separate\s+)?"
    r"(?:times|copies|repetitions|repeats|lines)\b|(?P<adverb>once|twice|thrice)\b)"
)
