"""Cutting a document into chunks that fit a prompt, measured with the model's own tokenizer.

Cuts fall on natural boundaries: between sections and pages first, then paragraphs, then sentences, and between
words only for text with no sentence ends. Every chunk remembers the sections it draws from, so a summary of it
or a passage found in it can name its pages.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence

from app.core.documents.document import Chunk as Chunk  # defined with the Document that can carry its cut
from app.core.documents.document import Document, Section, approximate_tokens

# Passages of about this many tokens: long enough to hold a fact with its context, short enough that several
# from different pages fit a small context (attached documents and libraries alike).
PASSAGE_TOKENS = 160
# A chunk that has reached this share of its budget ends at the next section or page rather than mid-way.
SECTION_CUT_FILL = 0.85
# Paragraphs are joined with a blank line: about one token each.
SEPARATOR_TOKENS = 2
# A paragraph of more than this many characters per token of budget is cut by characters before any of it is
# tokenized: a 100 MB line given to the tokenizer whole took 3.3 GB and minutes that no Ctrl+C could stop.
# Real prose runs about 4 characters a token, so a cut piece (half this) still holds several chunks' worth.
OVERLONG_CHARS_PER_TOKEN = 16


class ChunkingStopped(Exception):
    """``should_stop`` said so; raised between two tokenizer calls."""


def span_label(sections: Sequence[Section]) -> str:
    """A reference a person can follow: "page 4", "pages 4-7", "lines 1-240", 'section "A" to section "B"'."""
    if not sections:
        return "document"
    pages = [s.page for s in sections if s.page is not None]
    if len(pages) == len(sections):
        low, high = min(pages), max(pages)
        return f"page {low}" if low == high else f"pages {low}-{high}"
    first, last = sections[0].label, sections[-1].label
    if first == last:
        return first
    first_lines, last_lines = _LINES.match(first), _LINES.match(last)
    if first_lines and last_lines:
        return f"lines {first_lines.group(1)}-{last_lines.group(2) or last_lines.group(1)}"
    return f"{first} to {last}"


_LINES = re.compile(r"^lines? (\d+)(?:-(\d+))?$")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


def chunk_document(
    document: Document,
    count_tokens: Callable[[str], int],
    max_tokens: int,
    *,
    keep_sections_apart: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> list[Chunk]:
    """Cut ``document`` into chunks of at most ``max_tokens`` tokens (as ``count_tokens`` counts them).

    Cuts fall between paragraphs, and between sections (pages, headings) once a chunk is mostly full; a
    paragraph longer than the budget is cut between sentences, and a sentence longer than it between words.
    With ``keep_sections_apart`` no chunk spans two sections, so each has exactly one page or heading.
    ``should_stop`` is asked between tokenizer calls; when it says yes, ChunkingStopped is raised.
    """
    if max_tokens < 16:
        raise ValueError("a chunk budget under 16 tokens cannot hold a sentence")
    stop = should_stop or (lambda: False)
    tokenizer = count_tokens

    def counted(text: str) -> int:
        if stop():
            raise ChunkingStopped
        return tokenizer(text)

    units: list[tuple[int, str, int]] = []  # (section index, text, tokens)
    for section_index, section in enumerate(document.sections):
        for paragraph in re.split(r"\n\s*\n", section.text):
            for run in _character_runs(paragraph.strip(), max_tokens * OVERLONG_CHARS_PER_TOKEN):
                units.extend(
                    (section_index, piece, tokens) for piece, tokens in _fit_pieces(run, counted, max_tokens)
                )
    count_tokens = counted
    chunks: list[Chunk] = []
    pending = deque(units)
    while pending:
        group = [pending.popleft()]
        total = group[0][2]
        while pending:
            unit = pending[0]
            if unit[0] != group[-1][0] and (keep_sections_apart or total >= SECTION_CUT_FILL * max_tokens):
                break
            if total + SEPARATOR_TOKENS + unit[2] <= max_tokens:
                group.append(pending.popleft())
                total += SEPARATOR_TOKENS + unit[2]
                continue
            if total < SECTION_CUT_FILL * max_tokens:
                # A mostly empty chunk takes the sentences of the next paragraph that still fit: PDF pages often
                # come as one long paragraph, and whole ones would leave chunks half full.
                split = _split_to_fit(unit[1], count_tokens, max_tokens - total - SEPARATOR_TOKENS)
                if split is not None:
                    (head, head_tokens), (rest, rest_tokens) = split
                    group.append((unit[0], head, head_tokens))
                    total += SEPARATOR_TOKENS + head_tokens
                    pending[0] = (unit[0], rest, rest_tokens)
            break
        text = "\n\n".join(u[1] for u in group)
        exact = count_tokens(text) if len(group) > 1 else group[0][2]
        while exact > max_tokens and len(group) > 1:  # joining can tokenize a little differently
            pending.appendleft(group.pop())
            text = "\n\n".join(u[1] for u in group)
            exact = count_tokens(text)
        first, last = group[0][0], group[-1][0]
        chunks.append(
            Chunk(len(chunks), span_label(document.sections[first : last + 1]), text, exact, first, last)
        )
    return chunks


def cut_passages(document: Document, should_stop: Callable[[], bool] | None = None) -> list[Chunk]:
    """``document`` cut into the passages that retrieval indexes: PASSAGE_TOKENS each (as ``approximate_tokens``
    counts), none spanning two sections, so each has one page or heading."""
    return chunk_document(
        document, approximate_tokens, PASSAGE_TOKENS, keep_sections_apart=True, should_stop=should_stop
    )


def passages_of(document: Document) -> list[Chunk]:
    """The passages of ``document``: the cut the reader's child process made (``Document.passages``), or made
    now on the calling thread (a document from the history, or made in memory)."""
    if document.passages is not None:
        return list(document.passages)
    return cut_passages(document)


def _character_runs(text: str, limit: int) -> list[str]:
    """``text`` in runs of at most ``limit`` characters (none when it is blank), cut at the last sentence end or
    space in the second half of each run when there is one."""
    if not text:
        return []
    if len(text) <= limit:
        return [text]
    runs: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + limit)
        if end < len(text):
            window = text[start + limit // 2 : end]
            cut = max(window.rfind(". "), window.rfind("\n"))
            if cut < 0:
                cut = window.rfind(" ")
            if cut >= 0:
                end = start + limit // 2 + cut + 1
        run = text[start:end].strip()
        if run:
            runs.append(run)
        start = end
    return runs


def _split_to_fit(
    text: str, count_tokens: Callable[[str], int], room: int
) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """The longest run of whole sentences from the start of ``text`` within ``room`` tokens, and the rest."""
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    if len(sentences) < 2 or room < 16:
        return None
    taken = 0
    used = 0
    for sentence in sentences[:-1]:
        cost = count_tokens(sentence) + 1
        if used + cost > room:
            break
        used += cost
        taken += 1
    while taken:
        head = " ".join(sentences[:taken])
        head_tokens = count_tokens(head)
        if head_tokens <= room:
            rest = " ".join(sentences[taken:])
            return (head, head_tokens), (rest, count_tokens(rest))
        taken -= 1
    return None


def _fit_pieces(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> list[tuple[str, int]]:
    tokens = count_tokens(text)
    if tokens <= max_tokens:
        return [(text, tokens)]
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    if len(sentences) <= 1:
        return _split_words(text, count_tokens, max_tokens)
    pieces: list[tuple[str, int]] = []
    current: list[str] = []
    current_tokens = 0
    for sentence in sentences:
        sentence_tokens = count_tokens(sentence)
        if sentence_tokens > max_tokens:
            if current:
                pieces.append(_measured(" ".join(current), count_tokens))
                current, current_tokens = [], 0
            pieces.extend(_split_words(sentence, count_tokens, max_tokens))
            continue
        if current and current_tokens + 1 + sentence_tokens > max_tokens:
            pieces.append(_measured(" ".join(current), count_tokens))
            current, current_tokens = [], 0
        current.append(sentence)
        current_tokens += sentence_tokens + (1 if len(current) > 1 else 0)
    if current:
        pieces.append(_measured(" ".join(current), count_tokens))
    fitted: list[tuple[str, int]] = []
    for piece, piece_tokens in pieces:  # a join can exceed the sum by a token: split again if so
        fitted.extend(
            [(piece, piece_tokens)]
            if piece_tokens <= max_tokens
            else _split_words(piece, count_tokens, max_tokens)
        )
    return fitted


def _measured(text: str, count_tokens: Callable[[str], int]) -> tuple[str, int]:
    return text, count_tokens(text)


def _split_words(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> list[tuple[str, int]]:
    """Halve until each piece fits: for text with no sentence ends (tables, code, run-on lines)."""
    tokens = count_tokens(text)
    if tokens <= max_tokens:
        return [(text, tokens)]
    words = text.split(" ")
    if len(words) < 2:
        middle = len(text) // 2
        halves = [text[:middle], text[middle:]]
    else:
        middle = len(words) // 2
        halves = [" ".join(words[:middle]), " ".join(words[middle:])]
    return [
        piece for half in halves if half.strip() for piece in _split_words(half, count_tokens, max_tokens)
    ]
