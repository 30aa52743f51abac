"""What the model is asked at each step of a summary, and the tidying of what it writes back.

Small models follow one short instruction placed after the text far better than a long preamble, so every
prompt is the text first and one sentence of instruction last.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from app.core.documents.document import Document
from app.core.documents.summary_types import PartSummary, SummaryStyle, TextCallback
from app.core.llm.context import ChatMessage

# Bumped whenever a prompt below changes, so summaries made with old prompts are not served from the cache.
PROMPT_VERSION = 2
SYSTEM_PROMPT = "You summarize text accurately and briefly."

_FINAL_ASK: dict[SummaryStyle, str] = {
    "brief": "Write a brief summary of the whole document in three to five sentences.",
    "detailed": "Write a detailed summary of the whole document. Cover every part in order and keep names and numbers.",
    "points": "What is the most important point of the text above? Answer in one sentence.",
}


def _messages(user: str) -> list[ChatMessage]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def map_prompt(text: str) -> list[ChatMessage]:
    """A section summary of one chunk."""
    return _messages(f"{text}\n\nSummarize the text above in two or three sentences.")


def listing(parts: Sequence[PartSummary]) -> str:
    """Part summaries one after another, each under its reference: "[pages 3-5] ..."."""
    return "\n\n".join(f"[{p.label}] {p.text}" for p in parts)


def combine_prompt(parts: Sequence[PartSummary]) -> list[ChatMessage]:
    """One summary of several consecutive part summaries."""
    return _messages(
        f"Summaries of consecutive parts of a document:\n\n{listing(parts)}\n\n"
        "Combine them into one summary of three or four sentences."
    )


def final_prompt(style: SummaryStyle, parts: Sequence[PartSummary]) -> list[ChatMessage]:
    """The summary of the whole document, in ``style``, from the summaries of its parts."""
    return _messages(
        f"Summaries of the parts of a document, in order:\n\n{listing(parts)}\n\n{_FINAL_ASK[style]}"
    )


def one_pass_prompt(style: SummaryStyle, text: str) -> list[ChatMessage]:
    """The summary of a document short enough to be read whole."""
    ask = _FINAL_ASK[style].replace("the whole document", "the text above")
    return _messages(f"{text}\n\n{ask}")


def point_prompt(text: str) -> list[ChatMessage]:
    """One key point of ``text``."""
    return _messages(f"{text}\n\n{_FINAL_ASK['points']}")


def marked_text(document: Document) -> str:
    """The whole text with a [page N] / [section] marker before each part, so an answer can refer to them."""
    if len(document.sections) < 2:
        return document.text
    return "\n\n".join(f"[{s.label}]\n{s.text}" for s in document.sections if s.text)


def whole_sentences(text: str) -> str:
    """``text`` up to its last sentence end, unless that would drop more than half of it."""
    ends = [m.end() for m in re.finditer(r"[.!?](?:[\"')\]]*)(?=\s|$)", text)]
    if ends and ends[-1] >= len(text) // 2:
        return text[: ends[-1]].strip()
    return text.strip()


_POINT_PREAMBLE = re.compile(
    r"^(?:the\s+)?(?:single\s+)?(?:most\s+important|main|key|central)\s+point(?:\s+of\s+(?:the|this)\s+text)?"
    r"(?:\s+above)?\s+(?:is|was)\s*(?:that\s+|:\s*)?",
    re.IGNORECASE,
)


class OneLinePoint:
    """Streams a key point as one line: newlines become spaces, and the "The most important point of the text
    is that" that small models open with is dropped (the first few dozen characters wait to be checked)."""

    HOLD = 90

    def __init__(self, sink: TextCallback) -> None:
        self.sink = sink
        self.held: str | None = ""  # None once the opening has been checked and sent
        self.text = ""

    def __call__(self, piece: str) -> None:
        piece = piece.replace("\n", " ")
        if self.held is None:
            self._send(piece)
            return
        self.held += piece
        if len(self.held) >= self.HOLD:
            self.finish()

    def finish(self) -> None:
        if self.held is None:
            return
        opening = self.held.lstrip()
        self.held = None
        stripped = _POINT_PREAMBLE.sub("", opening, count=1)
        if stripped != opening and stripped:
            stripped = stripped[0].upper() + stripped[1:]
        self._send(stripped)

    def _send(self, piece: str) -> None:
        if piece:
            self.text += piece
            self.sink(piece)
