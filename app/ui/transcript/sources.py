"""The sources under an answer about documents: the passages the model was given, one source per document page (or
section); clicking one shows its passages below, with the sentence that matched the question marked, and a button
that opens the file at that page; clicking it again hides them.

The references are links in one word-wrapped label, so any number of them wraps to the message's width instead
of widening it; the passages open in place (not a popup), so they stay beside the answer while the person reads.
Each reference is followed by an arrow link that opens its file straight away, as the button does.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.core.documents.retrieval import matched_sentences
from app.core.history.sources import OpenPlan, ReplySource, SourceGroup, group_sources, open_plan

LINK_SCHEME = "source"
OPEN_SCHEME = "open"
# The marked sentence: dark text on a marker's yellow reads the same in a light and a dark theme.
_MARK_STYLE = "background-color:#fff0a0; color:#1a1a1a; font-weight:600"


class SourcesPanel(QWidget):
    """Signals:
    passage_shown(int): the source at this index was opened (-1: the open one was closed).
    file_opened(str): a source's file was handed to the system's viewer (its path).
    """

    passage_shown = Signal(int)
    file_opened = Signal(str)

    def __init__(self, sources: Sequence[ReplySource], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("replySources")
        self.sources: list[SourceGroup] = group_sources(sources)
        self.shown: int | None = None
        self.marked: list[str] = []  # the sentences marked in the passages shown
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(4)
        self.links = QLabel(self._links_html())
        self.links.setObjectName("messageStats")
        self.links.setWordWrap(True)
        self.links.setTextFormat(Qt.TextFormat.RichText)
        self.links.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.links.setAccessibleName("Sources of this answer")
        self.links.setToolTip(
            "The passages the model was given, one source per page. Click one to read it; click ↗ to open "
            "its file at that page."
        )
        self.links.linkActivated.connect(self._on_link)
        layout.addWidget(self.links)
        self.passage = QFrame()
        self.passage.setObjectName("sourcePassage")
        self.passage.setFrameShape(QFrame.Shape.StyledPanel)
        passage_layout = QVBoxLayout(self.passage)
        passage_layout.setContentsMargins(8, 6, 8, 6)
        title_row = QHBoxLayout()
        self.passage_title = QLabel()
        self.open_button = QPushButton("Open")
        self.open_button.setAccessibleName("Open this source's file")
        self.open_button.clicked.connect(self._on_open_clicked)
        title_row.addWidget(self.passage_title, 1)
        title_row.addWidget(self.open_button)
        self.passage_text = QLabel()
        self.passage_text.setWordWrap(True)
        self.passage_text.setTextFormat(Qt.TextFormat.RichText)
        self.passage_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.passage_text.setAccessibleName("Source passage")
        self.file_note = QLabel()  # why the file cannot be opened, when it cannot
        self.file_note.setObjectName("messageStats")
        self.file_note.setWordWrap(True)
        self.file_note.hide()
        passage_layout.addLayout(title_row)
        passage_layout.addWidget(self.passage_text)
        passage_layout.addWidget(self.file_note)
        layout.addWidget(self.passage)
        self.passage.hide()

    def references(self) -> list[str]:
        """Each source's reference as shown, in order: one per document page or section."""
        return [group.reference for group in self.sources]

    def _links_html(self) -> str:
        links = [
            f'<a href="{LINK_SCHEME}:{index}">{html.escape(group.reference)}</a>'
            # A no-break space: a wrapped line never leaves the ↗ alone, away from the reference it opens.
            + (f'&nbsp;<a href="{OPEN_SCHEME}:{index}">↗</a>' if group.path else "")
            for index, group in enumerate(self.sources)
        ]
        return "Sources: " + " · ".join(links)

    @Slot(str)
    def _on_link(self, link: str) -> None:
        scheme, _, number = link.partition(":")
        if not (number.isdigit() and int(number) < len(self.sources)):
            return
        if scheme == LINK_SCHEME:
            self.toggle(int(number))
        elif scheme == OPEN_SCHEME:
            self.open_file(int(number))

    def toggle(self, index: int) -> None:
        """Show the passages of the source at ``index``, or hide them when it is the one shown."""
        if self.shown == index:
            self.shown = None
            self.marked = []
            self.passage.hide()
            self.passage_shown.emit(-1)
            return
        self.shown = index
        group = self.sources[index]
        self.passage_title.setText(f"<b>{html.escape(group.reference)}</b>")
        text = group.text
        spans = matched_sentences(group.question, text) if group.question else []
        self.marked = [reflowed(text[start:end]) for start, end in spans]
        self.passage_text.setText(marked_html(text, spans))
        self._show_open_plan(open_plan(group))
        self.passage.show()
        self.passage_shown.emit(index)

    def _show_open_plan(self, plan: OpenPlan) -> None:
        self.open_button.setVisible(plan.problem is None)
        self.open_button.setText(
            "Show in folder"
            if plan.folder
            else f"Open at page {plan.page}"
            if plan.page is not None
            else "Open file"
        )
        self.open_button.setToolTip(plan.description)
        self.file_note.setText(plan.problem or "")
        self.file_note.setVisible(plan.problem is not None)

    @Slot()
    def _on_open_clicked(self) -> None:
        if self.shown is not None:
            self.open_file(self.shown)

    def open_file(self, index: int) -> None:
        """Open the file of the source at ``index`` in the system's viewer (at its page, for a PDF); when it
        cannot be, show its passages with the sentence saying why."""
        group = self.sources[index]
        problem = open_source_file(group)
        if problem is None:
            self.file_opened.emit(group.path)
            return
        if self.shown != index:
            self.toggle(index)
        self.open_button.hide()
        self.file_note.setText(problem)
        self.file_note.show()


def source_url(plan: OpenPlan) -> QUrl:
    """The file URL the viewer is given: a PDF's page as '#page=N', the fragment PDF viewers follow (Adobe's
    "PDF open parameters"; Firefox, Chrome, Okular and Evince honour it; those that do not open page 1)."""
    url = QUrl.fromLocalFile(plan.path)
    if plan.page is not None:
        url.setFragment(f"page={plan.page}")
    return url


def open_source_file(group: SourceGroup) -> str | None:
    """Hand ``group``'s file to the system's viewer (the one way the app opens a source's file); a sentence
    saying why not when it cannot be, else None. Only a file URL is opened, never a command, and only for a
    file that exists now: a program's source opens its folder instead (see ``open_plan``)."""
    plan = open_plan(group)
    if plan.problem is not None:
        return plan.problem
    if not QDesktopServices.openUrl(source_url(plan)):
        return (
            f"No program on this computer opened {group.document_name}. Open it yourself from {plan.path}, "
            "or set a default program for this kind of file."
        )
    return None


def marked_html(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` as rich text, reflowed (see ``reflowed``), with each of ``spans`` (start, end) marked."""
    pieces: list[str] = []
    at = 0
    for start, end in spans:
        pieces.append(_html_piece(text[at:start]))
        pieces.append(f'<span style="{_MARK_STYLE}">{_html_piece(text[start:end])}</span>')
        at = end
    pieces.append(_html_piece(text[at:]))
    return "".join(pieces)


def _html_piece(text: str) -> str:
    return _PARAGRAPH_BREAK.sub("<br><br>", html.escape(reflowed(text), quote=False))


def reflowed(text: str) -> str:
    """``text`` with its single line breaks joined: a PDF's text keeps the page's line ends, which would wrap
    the passage a second time at the panel's narrower width. Paragraph breaks stay."""
    return _LINE_BREAK.sub(" ", text)


_LINE_BREAK = re.compile(r"(?<!\n)[ \t]*\n[ \t]*(?!\n)")
_PARAGRAPH_BREAK = re.compile(r"\s*\n\s*\n\s*")


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
