"""A reply's Markdown rendered as it streams: finished blocks are rendered once and kept, only the rest again.

A reply only grows, so its text is cut where nothing written later can change what comes before: after a blank
line, outside any code fence, before a line that starts at the margin and cannot continue the block above (not
a list item, a quote, an indented line, or a line that continues code a model wrote without a fence). Each cut
is checked against markdown-it's own reading of the text (a top-level block starts exactly there) and against
``fence_bare_code`` (fencing the two parts apart gives what fencing the whole gives), so the parts rendered one
by one join into exactly the HTML a full render gives. A reference definition (``[x]: url``) can change links
anywhere before it, so a text that may hold one is rendered whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.ui.transcript.markdown_render import (
    _COMMENT,
    _FENCE,
    MarkdownRenderer,
    Palette,
    Template,
    _continues_code,
    fence_bare_code,
    wrap_body,
)

# A line that could continue a list above it, even with nothing after its marker yet.
_LIST_MARKER = re.compile(r"(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
# A line that may start a link reference definition, inside quotes or list items too.
_MAY_DEFINE_REFERENCE = re.compile(r"^[ \t>*+\-\d.)]*\[", re.MULTILINE)


@dataclass
class Piece:
    """A finished part of the text (``source``, as the model wrote it) and its rendering."""

    source: str
    template: Template
    final: bool = False  # rendered as a final render would (its unlabelled code guessed at)


class StreamingMarkdown:
    """The rendering of one message's text, kept between updates while the text grows."""

    def __init__(self, renderer: MarkdownRenderer) -> None:
        self.renderer = renderer
        self.pieces: list[Piece] = []
        self._settled = ""  # the pieces' sources joined
        self.tail = Template("")
        self.reused = 0  # how many pieces the last update kept rather than rendered (tests read it)

    def update(self, text: str, *, final: bool) -> None:
        """Render ``text``: the pieces it shares with the last update are kept, the rest is rendered."""
        if not text.startswith(self._settled) or _may_define_reference(text):
            self.pieces, self._settled = [], ""
        self.reused = len(self.pieces)
        rest = text[len(self._settled) :]
        cut = 0 if final else self._last_cut(rest)  # a final text is rendered once: no need to keep parts
        if cut:
            self._add_piece(rest[:cut])
            rest = rest[cut:]
        if final:
            for index, piece in enumerate(self.pieces):
                if piece.template.final_sensitive and not piece.final:
                    self.pieces[index] = Piece(
                        piece.source, self._render(piece.source, self._code_before(index), final=True), True
                    )
        self.tail = self.renderer.render_template(
            rest, final=final, growing_end=True, first_code_index=self._code_before(len(self.pieces))
        )

    def _add_piece(self, source: str) -> None:
        self.pieces.append(
            Piece(source, self._render(source, self._code_before(len(self.pieces)), final=False))
        )
        self._settled += source

    def _render(self, source: str, first_code_index: int, *, final: bool) -> Template:
        return self.renderer.render_template(
            source, final=final, growing_end=False, first_code_index=first_code_index
        )

    def _code_before(self, index: int) -> int:
        return sum(len(piece.template.code_blocks) for piece in self.pieces[:index])

    def _last_cut(self, text: str) -> int:
        """The furthest offset in ``text`` where a finished part ends, 0 if none."""
        if _may_define_reference(text):
            return 0
        candidates = _candidate_cuts(text)
        if not candidates:
            return 0
        converted = fence_bare_code(text)
        tokens = self.renderer.parse(converted)
        for offset in reversed(candidates):
            head = fence_bare_code(text[:offset])
            if head + fence_bare_code(text[offset:]) != converted:
                continue
            line = head.count("\n")
            starts = any(t.level == 0 and t.map and t.map[0] == line for t in tokens)
            spans = any(t.level == 0 and t.map and t.map[0] < line < t.map[1] for t in tokens)
            if starts and not spans:
                return offset
        return 0

    @property
    def templates(self) -> list[Template]:
        return [*(piece.template for piece in self.pieces), self.tail]

    @property
    def code_blocks(self) -> list[str]:
        return [code for template in self.templates for code in template.code_blocks]

    @property
    def languages(self) -> list[str]:
        return [language for template in self.templates for language in template.languages]

    def html(self, palette: Palette) -> str:
        """The whole text's HTML, as ``MarkdownRenderer.render`` gives it."""
        return wrap_body("".join(template.html(palette) for template in self.templates), palette)


def _may_define_reference(text: str) -> bool:
    return "]:" in text and _MAY_DEFINE_REFERENCE.search(text) is not None


def _candidate_cuts(text: str) -> list[int]:
    """Offsets of the lines where a finished part may end, by the line rules alone (see the module's text)."""
    cuts: list[int] = []
    lines = text.split("\n")
    offset = 0
    open_fence = ""
    for index, line in enumerate(lines[:-1]):  # the last line is still being written
        if (
            index > 0
            and not open_fence
            and not lines[index - 1].strip()
            and line.strip()
            and line[0] not in " \t>"
            and not _LIST_MARKER.match(line)
            and not _COMMENT.match(line)
            and not _continues_code(line)
        ):
            cuts.append(offset)
        fence = _FENCE.match(line)
        if open_fence:
            closes = fence and fence.group(1)[0] == open_fence[0] and len(fence.group(1)) >= len(open_fence)
            if closes and not line.strip().strip(open_fence[0]):
                open_fence = ""
        elif fence:
            open_fence = fence.group(1)
        offset += len(line) + 1
    return cuts
