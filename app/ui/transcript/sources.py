"""The sources under an answer about documents: the passages the model was given, each named by its document and
page (or section); clicking one shows its text below, clicking it again hides it.

The references are links in one word-wrapped label, so any number of them wraps to the message's width instead
of widening it; the passage opens in place (not a popup), so it stays beside the answer while the person reads.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from app.core.history.sources import ReplySource

LINK_SCHEME = "source"


class SourcesPanel(QWidget):
    """Signals:
    passage_shown(int): the passage at this index was opened (-1: the open one was closed).
    """

    passage_shown = Signal(int)

    def __init__(self, sources: Sequence[ReplySource], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("replySources")
        self.sources = list(sources)
        self.shown: int | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(4)
        self.links = QLabel(self._links_html())
        self.links.setObjectName("messageStats")
        self.links.setWordWrap(True)
        self.links.setTextFormat(Qt.TextFormat.RichText)
        self.links.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.links.setAccessibleName("Sources of this answer")
        self.links.setToolTip("The passages the model was given. Click one to read it.")
        self.links.linkActivated.connect(self._on_link)
        layout.addWidget(self.links)
        self.passage = QFrame()
        self.passage.setObjectName("sourcePassage")
        self.passage.setFrameShape(QFrame.Shape.StyledPanel)
        passage_layout = QVBoxLayout(self.passage)
        passage_layout.setContentsMargins(8, 6, 8, 6)
        self.passage_title = QLabel()
        self.passage_text = QLabel()
        self.passage_text.setWordWrap(True)
        self.passage_text.setTextFormat(Qt.TextFormat.PlainText)
        self.passage_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.passage_text.setAccessibleName("Source passage")
        passage_layout.addWidget(self.passage_title)
        passage_layout.addWidget(self.passage_text)
        layout.addWidget(self.passage)
        self.passage.hide()

    def references(self) -> list[str]:
        """Each passage's reference as shown, in order; a page given twice is told apart by a number."""
        seen: dict[str, int] = {}
        shown: list[str] = []
        for source in self.sources:
            seen[source.reference] = seen.get(source.reference, 0) + 1
            count = seen[source.reference]
            shown.append(source.reference if count == 1 else f"{source.reference} ({count})")
        return shown

    def _links_html(self) -> str:
        links = [
            f'<a href="{LINK_SCHEME}:{index}">{html.escape(reference)}</a>'
            for index, reference in enumerate(self.references())
        ]
        return "Sources: " + " · ".join(links)

    @Slot(str)
    def _on_link(self, link: str) -> None:
        scheme, _, number = link.partition(":")
        if scheme == LINK_SCHEME and number.isdigit() and int(number) < len(self.sources):
            self.toggle(int(number))

    def toggle(self, index: int) -> None:
        """Show the passage at ``index``, or hide it when it is the one shown."""
        if self.shown == index:
            self.shown = None
            self.passage.hide()
            self.passage_shown.emit(-1)
            return
        self.shown = index
        self.passage_title.setText(f"<b>{html.escape(self.references()[index])}</b>")
        self.passage_text.setText(reflowed(self.sources[index].text))
        self.passage.show()
        self.passage_shown.emit(index)


def reflowed(text: str) -> str:
    """``text`` with its single line breaks joined: a PDF's text keeps the page's line ends, which would wrap
    the passage a second time at the panel's narrower width. Paragraph breaks stay."""
    return _LINE_BREAK.sub(" ", text)


_LINE_BREAK = re.compile(r"(?<!\n)[ \t]*\n[ \t]*(?!\n)")


def show_sources(below: QWidget, sources: Sequence[ReplySource]) -> SourcesPanel | None:
    """Put the panel of ``sources`` right under ``below`` (a message's text), in its parent's layout, replacing
    a panel already there; nothing when there are no sources."""
    parent = below.parentWidget()
    layout = parent.layout() if parent is not None else None
    if parent is None or layout is None or not isinstance(layout, QVBoxLayout):
        return None
    old = parent.findChild(SourcesPanel, options=Qt.FindChildOption.FindDirectChildrenOnly)
    if old is not None:
        layout.removeWidget(old)
        old.setParent(None)
        old.deleteLater()
    if not sources:
        return None
    panel = SourcesPanel(sources, parent)
    layout.insertWidget(layout.indexOf(below) + 1, panel)
    return panel


def sources_of(message: QWidget) -> SourcesPanel | None:
    """The sources panel shown in ``message``, if any."""
    return message.findChild(SourcesPanel, options=Qt.FindChildOption.FindDirectChildrenOnly)
