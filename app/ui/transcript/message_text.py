"""A message's rendered text on screen: its Markdown kept between repaints, shown in one or more text views.

Qt parses a whole document again on every ``setHtml``, at ~10 ms per 1,000 characters of reply here, so a long
streaming reply cannot live in one document that is set each repaint. While a reply streams, its finished
pieces are sealed into views of about ``CHUNK_CHARS`` characters that are never set again, and only the last
view (the unsealed pieces and the part still being written) is set on each repaint: the cost of a repaint stays
that of a short reply however long the reply grows. A stored message is shown in one view. A theme change
re-colours the kept rendering (no Markdown parsing, no lexing) and sets each view once.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QTextBrowser

from app.ui.transcript.markdown_render import MarkdownRenderer, Template, wrap_body
from app.ui.transcript.streaming_render import StreamingMarkdown

CHUNK_CHARS = 1_500  # text sealed into one view while a reply streams


class MessageText:
    """The views (``bodies``) showing one message's text; the first is the message's own, created with it."""

    def __init__(
        self,
        body: QTextBrowser,
        renderer: MarkdownRenderer,
        add_body: Callable[[QTextBrowser], QTextBrowser],
        remove_body: Callable[[QTextBrowser], None],
    ) -> None:
        """``add_body(after)`` makes another view right below ``after``; ``remove_body`` takes one away."""
        self.bodies = [body]
        self._renderer = renderer
        self._markdown = StreamingMarkdown(renderer)
        self._add_body = add_body
        self._remove_body = remove_body
        self._sealed: list[list[Template]] = []  # the templates each sealed view shows, in order
        self._sealed_pieces = 0

    def set_text(self, text: str, *, final: bool) -> None:
        markdown = self._markdown
        markdown.update(text, final=final)
        if markdown.reused < self._sealed_pieces:  # not the same text grown: show it anew
            self._unseal()
        pieces = markdown.pieces
        for index, group in enumerate(self._sealed):  # a piece re-rendered for the final text
            first = sum(len(g) for g in self._sealed[:index])
            current = [piece.template for piece in pieces[first : first + len(group)]]
            if any(a is not b for a, b in zip(current, group, strict=True)):
                self._sealed[index] = current
                self._set(self.bodies[index], current)
        if not final:
            self._seal_finished()
        open_pieces = [piece.template for piece in pieces[self._sealed_pieces :]]
        self._set(self.bodies[-1], [*open_pieces, markdown.tail])

    def _seal_finished(self) -> None:
        pieces = self._markdown.pieces
        while True:
            size, end = 0, self._sealed_pieces
            while end < len(pieces) and size < CHUNK_CHARS:
                size += len(pieces[end].source)
                end += 1
            if size < CHUNK_CHARS:
                return
            group = [piece.template for piece in pieces[self._sealed_pieces : end]]
            self._set(self.bodies[-1], group)
            self._sealed.append(group)
            self._sealed_pieces = end
            self.bodies.append(self._add_body(self.bodies[-1]))

    def _unseal(self) -> None:
        for body in self.bodies[1:]:
            self._remove_body(body)
        self.bodies = self.bodies[:1]
        self._sealed, self._sealed_pieces = [], 0

    def _set(self, body: QTextBrowser, templates: list[Template]) -> None:
        palette = self._renderer.palette
        body.setHtml(wrap_body("".join(template.html(palette) for template in templates), palette))

    def recolour(self) -> None:
        """Show the text in the renderer's palette as it is now, from the kept rendering."""
        for body, group in zip(self.bodies, self._sealed, strict=False):
            self._set(body, group)
        open_pieces = [piece.template for piece in self._markdown.pieces[self._sealed_pieces :]]
        self._set(self.bodies[-1], [*open_pieces, self._markdown.tail])

    @property
    def code_blocks(self) -> list[str]:
        return self._markdown.code_blocks

    @property
    def languages(self) -> list[str]:
        return self._markdown.languages
