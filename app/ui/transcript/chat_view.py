"""The transcript: one widget per message, Markdown rendered, code highlighted, only the growing reply repainted.

Tokens can arrive at 100+ per second; re-rendering Markdown for each would starve the GUI thread. Pieces are
buffered and the streaming message re-renders at most ~30 times a second, and no other message is touched.
The view follows the end of the conversation unless the user has scrolled up to read.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QColor, QDesktopServices, QGuiApplication, QResizeEvent, QTextOption
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTextBrowser,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.core.history.records import BranchPosition
from app.core.history.sources import ReplySource
from app.core.llm.engine import ReplyStats
from app.core.units import counted
from app.ui.transcript.branch_switcher import BranchSwitcher
from app.ui.transcript.markdown_render import LIGHT, MarkdownRenderer, Palette, warm_up_highlighting
from app.ui.transcript.message_text import MessageText
from app.ui.transcript.sources import show_sources
from app.ui.transcript.waiting import WaitingLine

REPAINT_INTERVAL_MS = 33  # ~30 repaints a second while a reply streams
PAGE = 24  # older messages shown at a time (more than a screenful), as the person scrolls up to them
SLICE_SECONDS = 0.006  # building widgets pauses this often, so the GUI thread never waits long
LOAD_MORE_PIXELS = 300  # how near the top the view must be for older messages to be shown

STATE_NOTES = {
    "stopped": "Stopped",
    "interrupted": "Interrupted: the app closed while this reply was being written",
    "failed": "Failed",
}


class MessageBody(QTextBrowser):
    """Rendered Markdown that is as tall as its content, so the surrounding scroll area does the scrolling."""

    copy_code = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Nothing may be wider than the view: with the scroll bar off, a long code line or URL would make the
        # whole message scroll sideways, out of reach. Code blocks wrap (pre-wrap), and a word longer than the
        # line breaks anywhere; Copy still takes the code exactly as written.
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(0)
        self.viewport().setAutoFillBackground(False)
        self.setStyleSheet("QTextBrowser { background: transparent; }")
        self.document().setDocumentMargin(2)
        self.document().documentLayout().documentSizeChanged.connect(self._fit_height)
        self.anchorClicked.connect(self._on_anchor)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
            | Qt.TextInteractionFlag.LinksAccessibleByMouse
        )

    def _fit_height(self, *_args: Any) -> None:
        self.setFixedHeight(int(self.document().size().height()) + 4)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.document().setTextWidth(self.viewport().width())
        self._fit_height()

    def sizeHint(self) -> QSize:
        return QSize(400, int(self.document().size().height()) + 4)

    def loadResource(self, kind: int, name: QUrl | str) -> Any:
        """Nothing is loaded from disk or network for a message: its text is all there is."""
        return None

    @Slot(QUrl)
    def _on_anchor(self, url: QUrl) -> None:
        if url.scheme() == "copy":
            index = url.path()
            if index.isdigit():  # a model can write a copy: link of its own; only ours are numbers
                self.copy_code.emit(int(index))
        elif url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)


class MessageWidget(QFrame):
    """One message: who wrote it, the rendered text, its stats, and its actions."""

    copy_requested = Signal()
    regenerate_requested = Signal()
    retry_requested = Signal()
    edit_requested = Signal()
    code_copied = Signal()

    def __init__(
        self, role: str, author: str, renderer: MarkdownRenderer, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.role = role
        self.text = ""
        self.state = "complete"
        self.message_id: int | None = None  # the stored message shown (None until it is stored)
        self.stats: ReplyStats | None = None
        self._last = False
        self._busy = False  # a reply streams: no other version can be chosen or written meanwhile
        self._unanswered = False  # the last message shown is this question: its reply failed or never came
        self.failure = ""  # why its reply failed, shown with Retry (empty: not known, e.g. reopened later)
        self._failure_row: QWidget | None = None  # built when first shown: most questions never need it
        self.failure_label: QLabel | None = None
        self.retry_button: QPushButton | None = None
        self._renderer = renderer
        self.setObjectName("userMessage" if role == "user" else "assistantMessage")
        self.setFrameShape(QFrame.Shape.StyledPanel)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(2)
        header = QHBoxLayout()
        self.author_label = QLabel(f"<b>{author}</b>")
        header.addWidget(self.author_label)
        self.note_label = QLabel()
        self.note_label.setObjectName("messageNote")
        header.addWidget(self.note_label)
        header.addStretch(1)
        self.branch_switcher = BranchSwitcher(self)
        header.addWidget(self.branch_switcher)
        self.copy_button = self._action("Copy", "Copy this message", self.copy_requested)
        self.edit_button = self._action("Edit", "Edit this message and send it again", self.edit_requested)
        self.regenerate_button = self._action(
            "Regenerate", "Write this reply again", self.regenerate_requested
        )
        for button in (self.edit_button, self.regenerate_button, self.copy_button):
            header.addWidget(button)
        layout.addLayout(header)
        self.body = MessageBody(self)
        self.body.setAccessibleName(f"{author} message")
        self.body.copy_code.connect(self._on_copy_code)
        layout.addWidget(self.body)
        self._text = MessageText(self.body, renderer, self._add_body, self._remove_body)
        self.stats_label = QLabel()
        self.stats_label.setObjectName("messageStats")
        self.stats_label.hide()
        layout.addWidget(self.stats_label)
        self.set_last(False)

    def _action(self, label: str, tooltip: str, signal: Any) -> QPushButton:
        button = QPushButton(label)
        button.setFlat(True)
        button.setToolTip(tooltip)
        button.setAccessibleName(tooltip)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        button.clicked.connect(signal.emit)
        return button

    def set_text(self, text: str, *, final: bool = True) -> None:
        self.text = text
        self._text.set_text(text, final=final)

    @property
    def bodies(self) -> list[MessageBody]:
        """The views showing the text: ``body``, and below it more while a long reply streams in."""
        return [body for body in self._text.bodies if isinstance(body, MessageBody)]

    def _add_body(self, after: QTextBrowser) -> QTextBrowser:
        body = MessageBody(self)
        body.setAccessibleName(self.body.accessibleName())
        body.copy_code.connect(self._on_copy_code)
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertWidget(layout.indexOf(after) + 1, body)
        return body

    def _remove_body(self, body: QTextBrowser) -> None:
        body.setParent(None)
        body.deleteLater()

    def recolour(self) -> None:
        """Show the text in its renderer's (new) palette, without rendering the Markdown again."""
        self._text.recolour()

    def show_waiting(self, note: str) -> None:
        """Before the first word of a reply: ``note`` says the message is being read (the text replaces it)."""
        colour = self._renderer.palette.code_header
        self.body.setHtml(f'<p style="color:{colour};"><i>{html.escape(note)}</i></p>')

    @property
    def code_blocks(self) -> list[str]:
        return self._text.code_blocks

    @property
    def code_languages(self) -> list[str]:
        return self._text.languages

    def set_stored(self, message_id: int | None, branch: BranchPosition | None = None) -> None:
        """The stored message this widget shows, and where it stands among its versions ("< 2/3 >")."""
        self.message_id = message_id
        self.branch_switcher.set_position(branch)
        self._show_regenerate()

    def set_state(self, state: str) -> None:
        self.state = state
        self.note_label.setText(STATE_NOTES.get(state, ""))
        if self.role == "assistant":
            # A reply that broke off is written again the same way as any other, but the person wants it retried.
            failed = state == "failed"
            self.regenerate_button.setText("Retry" if failed else "Regenerate")
            tooltip = "Ask for this reply again" if failed else "Write this reply again"
            self.regenerate_button.setToolTip(tooltip)
            self.regenerate_button.setAccessibleName(tooltip)

    def set_stats(self, stats: ReplyStats | None) -> None:
        self.stats = stats
        if stats is None or stats.finish_reason == "failed":
            self.stats_label.hide()
            return
        parts = [counted(stats.generated_tokens, "token"), f"{stats.tokens_per_second:.1f} tokens/s"]
        if stats.time_to_first_token:
            parts.append(f"first token {stats.time_to_first_token:.2f} s")
        if stats.dropped_messages:
            parts.append(counted(stats.dropped_turns, "oldest turn") + " left out to fit the context")
        self.stats_label.setText(" · ".join(parts))
        self.stats_label.show()

    def set_last(self, last: bool, *, busy: bool = False, unanswered: bool = False) -> None:
        """Every question can be edited (the edit is a new version, so nothing after it is lost), except the
        last one while a reply streams. ``unanswered``: this question ends the transcript, with no reply below
        it (the reply failed before its first word), so it offers Retry."""
        self._last = last
        self._unanswered = last and unanswered
        self.edit_button.setVisible(self.role == "user" and not (last and busy))
        self._show_regenerate()
        self._show_retry()

    def set_busy(self, busy: bool) -> None:
        """While a reply streams, versions are shown but not switched, and no reply is written again."""
        self._busy = busy
        self.branch_switcher.set_locked(busy)
        self._show_regenerate()
        self._show_retry()

    def show_failure(self, sentence: str) -> None:
        """Why the reply to this question failed, shown under it with Retry while it stays unanswered."""
        self.failure = sentence
        self._show_retry()

    def clear_failure(self) -> None:
        self.failure = ""
        self._show_retry()

    def _show_regenerate(self) -> None:
        # Any stored reply can be written again (a new version of it); one not stored, only as the last.
        self.regenerate_button.setVisible(
            self.role == "assistant" and not self._busy and (self._last or self.message_id is not None)
        )

    def _show_retry(self) -> None:
        visible = self.role == "user" and self._unanswered and not self._busy
        if visible and self._failure_row is None:
            self._build_failure_row()
        if self._failure_row is None or self.failure_label is None:
            return
        self.failure_label.setText(self.failure or "This question has no reply yet.")
        self._failure_row.setVisible(visible)

    def _build_failure_row(self) -> None:
        row = QWidget(self)
        row.setObjectName("failedQuestion")
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        self.failure_label = QLabel()
        self.failure_label.setObjectName("messageNote")
        self.failure_label.setWordWrap(True)
        self.failure_label.setAccessibleName("Why the reply failed")
        layout.addWidget(self.failure_label, 1)
        self.retry_button = self._action("Retry", "Send this question again", self.retry_requested)
        layout.addWidget(self.retry_button)
        outer = self.layout()
        assert isinstance(outer, QVBoxLayout)
        outer.addWidget(row)
        self._failure_row = row

    @Slot(int)
    def _on_copy_code(self, index: int) -> None:
        if 0 <= index < len(self._text.code_blocks):
            QGuiApplication.clipboard().setText(self._text.code_blocks[index])
            self.code_copied.emit()


@dataclass(frozen=True)
class HistoryEntry:
    """A stored message to show: built into a widget only when it comes into view."""

    role: str
    text: str
    state: str = "complete"
    stats: ReplyStats | None = None
    sources: tuple[ReplySource, ...] = ()  # the passages the reply was given (see ``sources``)
    message_id: int | None = None
    branch: BranchPosition | None = None  # where it stands among its versions, if it has others
    author: str | None = None  # who wrote it as recorded ("Unknown model" if not); None: the model loaded now


class ChatView(QScrollArea):
    """The transcript of one conversation.

    Signals:
        regenerate_message_requested(object): the user wants this reply (a message widget) written again: a
            new version of it.
        retry_requested(object): the user wants this question (a message widget), whose reply failed, sent
            again.
        edit_requested(): the user wants to edit and resend the last question.
        edit_message_requested(object): the user wants to edit and resend this question (a message widget).
        copied(str): a message or a code block went to the clipboard; the sentence confirms it.
        branch_requested(object, int): a message widget and the id of its version to show instead.
    """

    regenerate_message_requested = Signal(object)
    retry_requested = Signal(object)
    edit_requested = Signal()
    edit_message_requested = Signal(object)
    copied = Signal(str)
    branch_requested = Signal(object, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setAccessibleName("Conversation transcript")
        self._renderer = MarkdownRenderer(LIGHT)
        self._container = QWidget()
        self._container.setObjectName("transcript")
        self._layout = QVBoxLayout(self._container)
        self._layout.setContentsMargins(16, 12, 16, 12)
        self._layout.setSpacing(10)
        self._layout.addStretch(1)
        self.setWidget(self._container)
        self.messages: list[MessageWidget] = []  # the widgets shown, oldest first
        self._extras: list[QWidget] = []
        self._older: list[HistoryEntry] = []  # stored messages fetched but not shown yet, oldest first
        self._fetch_older: Callable[[int], list[HistoryEntry]] | None = None
        self._shown_generation = (
            0  # changes with clear(), so a build under way for another conversation stops
        )
        self._to_build = 0  # how many of them are being built now, newest first
        self._keep_from_bottom: int | None = None  # while building above the view, where the view stays
        self._marked: list[MessageWidget] = []  # the last question and the last reply (edit, regenerate)
        self._streaming: MessageWidget | None = None
        self._pending = ""
        self._follow = True
        self.render_count = 0  # how often the streaming message was re-rendered (tests check the cap)
        self.last_render_seconds = 0.0  # what the last re-render cost the GUI thread (the benchmark reads it)
        self._waiting: WaitingLine | None = None  # the streaming reply's wait before its first word
        self._waiting_shown = ""  # the waiting note shown in its bubble
        self._flush_timer = QTimer(self)
        self._flush_timer.setInterval(REPAINT_INTERVAL_MS)
        self._flush_timer.timeout.connect(self._flush)
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range_changed)
        self.assistant_name = "Assistant"
        # PySide6 builds its Python enum types lazily, the first time each is touched: the first message
        # widget of a process spends ~25 ms on that. Building one here moves the cost into window start-up,
        # instead of stalling the first Send.
        MessageWidget("assistant", self.assistant_name, self._renderer).deleteLater()
        threading.Thread(target=warm_up_highlighting, name="warm-up-highlighting", daemon=True).start()

    def set_palette(self, palette: Palette) -> None:
        """Re-colour the messages shown from their kept rendering: no Markdown parsed, no code lexed again."""
        self._renderer.palette = palette
        for message in self.messages:
            message.recolour()

    # -- building the transcript ----------------------------------------------------------------------

    def clear(self) -> None:
        self._flush_timer.stop()
        self._streaming = None
        self._pending = ""
        for widget in [*self.messages, *self._extras]:
            widget.setParent(None)
            widget.deleteLater()
        self.messages = []
        self._extras = []
        self._older = []
        self._fetch_older = None
        self._shown_generation += 1
        self._to_build = 0
        self._keep_from_bottom = None
        self._marked = []
        self._follow = True

    def _make_message(
        self, role: str, text: str, state: str, stats: ReplyStats | None, author: str | None = None
    ) -> MessageWidget:
        author = "You" if role == "user" else author or self.assistant_name
        message = MessageWidget(role, author, self._renderer, self._container)
        message.copy_requested.connect(lambda m=message: self._copy_message(m))
        message.code_copied.connect(lambda: self.copied.emit("Copied the code block."))
        message.regenerate_requested.connect(lambda m=message: self.regenerate_message_requested.emit(m))
        message.retry_requested.connect(lambda m=message: self.retry_requested.emit(m))
        message.edit_requested.connect(self.edit_requested.emit)
        message.edit_requested.connect(lambda m=message: self.edit_message_requested.emit(m))
        message.branch_switcher.switch_requested.connect(
            lambda version, m=message: self.branch_requested.emit(m, version)
        )
        message.set_text(text)
        message.set_state(state)
        message.set_stats(stats)
        message.set_busy(self._streaming is not None)
        return message

    def _copy_message(self, message: MessageWidget) -> None:
        QGuiApplication.clipboard().setText(message.text)
        self.copied.emit("Copied the message.")

    def add_message(
        self,
        role: str,
        text: str,
        *,
        state: str = "complete",
        stats: ReplyStats | None = None,
        author: str | None = None,
    ) -> MessageWidget:
        message = self._make_message(role, text, state, stats, author)
        self._layout.insertWidget(self._layout.count() - 1, message)
        self.messages.append(message)
        self._update_last_markers()
        return message

    # -- a stored conversation, shown newest first -----------------------------------------------------

    def show_history(
        self,
        newest: list[HistoryEntry],
        fetch_older: Callable[[int], list[HistoryEntry]] | None = None,
        highlight: list[str] | None = None,
    ) -> None:
        """Show a stored conversation: its newest messages at once (built in short slices), and older ones, asked
        of ``fetch_older(count)`` (oldest first, just before those shown), as the person scrolls up to them. A
        conversation of thousands of messages opens as fast as a short one."""
        self._older = list(newest)
        self._fetch_older = fetch_older
        self._follow = True
        self._show_older(len(newest), then_highlight=highlight)

    @property
    def has_older(self) -> bool:
        """Whether older messages of this conversation wait to be shown."""
        return bool(self._older) or self._fetch_older is not None

    def _show_more(self) -> None:
        if not self._older and self._fetch_older is not None:
            self._older = self._fetch_older(PAGE)
            if len(self._older) < PAGE:
                self._fetch_older = None  # that was the first message
        if self._older:
            self._show_older(PAGE)

    def _show_older(self, count: int, then_highlight: list[str] | None = None) -> None:
        self._to_build = min(count, len(self._older))
        self._build_slice(self._shown_generation, then_highlight)

    def _build_slice(self, generation: int, then_highlight: list[str] | None) -> None:
        if generation != self._shown_generation:
            return  # another conversation is shown now
        started = time.perf_counter()
        bar = self.verticalScrollBar()
        if not self._follow and self._keep_from_bottom is None:
            self._keep_from_bottom = bar.maximum() - bar.value()
        while self._to_build and self._older and time.perf_counter() - started < SLICE_SECONDS:
            entry = self._older.pop()
            message = self._make_message(entry.role, entry.text, entry.state, entry.stats, entry.author)
            show_sources(message.body, entry.sources)
            message.set_stored(entry.message_id, entry.branch)
            position = self._layout.indexOf(self.messages[0]) if self.messages else self._layout.count() - 1
            self._layout.insertWidget(position, message)
            self.messages.insert(0, message)
            self._to_build -= 1
        self._update_last_markers()
        if self._to_build and self._older:
            QTimer.singleShot(0, lambda: self._build_slice(generation, then_highlight))
            return
        self._to_build = 0
        QTimer.singleShot(0, self._release_anchor)
        if then_highlight:
            self.highlight(then_highlight)

    def _release_anchor(self) -> None:
        self._keep_from_bottom = None

    def add_widget(self, widget: QWidget) -> None:
        """Put another kind of item (a document card) at the end of the transcript."""
        self._layout.insertWidget(self._layout.count() - 1, widget)
        self._extras.append(widget)

    def insert_widget(self, position: int, widget: QWidget) -> None:
        """Put another kind of item at ``position`` among the transcript's items (0: the top)."""
        self._layout.insertWidget(min(position, self._layout.count() - 1), widget)
        self._extras.append(widget)

    def remove_widget(self, widget: QWidget) -> None:
        """Take an item put there by ``add_widget`` or ``insert_widget`` out of the transcript (and delete it)."""
        if widget in self._extras:
            self._extras.remove(widget)
            widget.setParent(None)
            widget.deleteLater()

    def replace_from(self, message: MessageWidget | None, entries: list[HistoryEntry]) -> None:
        """Show ``entries`` in place of ``message`` and every message after it (another branch was chosen);
        with None, after the last message."""
        while message is not None and message in self.messages:
            self.remove_last()
        for entry in entries:
            shown = self.add_message(
                entry.role, entry.text, state=entry.state, stats=entry.stats, author=entry.author
            )
            show_sources(shown.body, entry.sources)
            shown.set_stored(entry.message_id, entry.branch)

    def remove_last(self) -> None:
        if self.messages:
            message = self.messages.pop()
            if message in self._marked:
                self._marked.remove(message)
            if message is self._streaming:
                self._streaming = None
                self._set_busy(False)
            message.setParent(None)
            message.deleteLater()
            self._update_last_markers()

    def _update_last_markers(self) -> None:
        """Only the last question and the last reply carry Edit and Regenerate; touching just those (and the two
        marked before) keeps adding a message O(1) however long the conversation."""
        busy = self._streaming is not None
        last_reply = next((m for m in reversed(self.messages) if m.role == "assistant"), None)
        last_question = next((m for m in reversed(self.messages) if m.role == "user"), None)
        marked = [m for m in (last_reply, last_question) if m is not None]
        for message in self._marked:
            if message not in marked:
                message.set_last(False)
        ends = self.messages[-1] if self.messages else None
        for message in marked:
            message.set_last(True, busy=busy, unanswered=message is ends and message.role == "user")
        self._marked = marked

    def show_failure(self, sentence: str) -> None:
        """The reply to the last question failed before its first word: ``sentence`` says why, under it."""
        if self.messages and self.messages[-1].role == "user":
            self.messages[-1].show_failure(sentence)

    # -- streaming ------------------------------------------------------------------------------------

    def _set_busy(self, busy: bool) -> None:
        for message in self.messages:
            message.set_busy(busy)

    def begin_reply(self, versions: BranchPosition | None = None) -> MessageWidget:
        """The reply about to stream; ``versions``: its place among the versions of the reply it is written
        again for, shown while it streams (the new version itself has no id yet)."""
        if self.messages and self.messages[-1].role == "user":
            self.messages[-1].clear_failure()  # it is being answered again: the old failure no longer holds
        message = self.add_message("assistant", "")
        message.set_state("streaming")
        message.set_stored(None, versions)
        self._streaming = message
        self._pending = ""
        self._set_busy(True)
        self._update_last_markers()
        self._flush_timer.start()
        self._waiting = WaitingLine()
        self._waiting_shown = ""
        self._show_waiting()
        return message

    def show_prompt_progress(self, done: int, total: int) -> None:
        """Before the reply's first word: ``done`` of the prompt's ``total`` tokens are read."""
        if self._waiting is not None:
            self._waiting.read(done, total)
        self._show_waiting()

    def _show_waiting(self) -> None:
        if self._streaming is None or self._waiting is None or self._streaming.text or self._pending:
            return
        note = self._waiting.note()
        if note != self._waiting_shown:  # it changes at most once a second, with the progress, or the CPU
            self._streaming.show_waiting(note)
            self._waiting_shown = note

    def append_to_reply(self, text: str) -> None:
        self._pending += text

    @property
    def pending_text(self) -> str:
        """Text of the streaming reply received but not shown yet (it shows at the next repaint)."""
        return self._pending

    @property
    def streaming_message(self) -> MessageWidget | None:
        return self._streaming

    @Slot()
    def _flush(self) -> None:
        if self._streaming is None or not self._pending:
            self._show_waiting()
            return
        started = time.perf_counter()
        self._streaming.set_text(self._streaming.text + self._pending, final=False)
        self._pending = ""
        self.render_count += 1
        self.last_render_seconds = time.perf_counter() - started

    def finish_reply(self, stats: ReplyStats | None, state: str) -> None:
        self._flush_timer.stop()
        if self._streaming is not None:
            self._streaming.set_text(self._streaming.text + self._pending)  # final render, languages guessed
            self._pending = ""
            self._streaming.set_state(state)
            self._streaming.set_stats(stats)
        self._streaming = None
        self._set_busy(False)
        self._update_last_markers()

    def highlight(self, terms: list[str]) -> None:
        """Mark every occurrence of ``terms`` (a search) and bring the first into view."""
        first: MessageWidget | None = None
        color = QColor("#fff2a8") if self._renderer.palette is LIGHT else QColor("#6e5b00")
        for message in self.messages:
            found = False
            for body in message.bodies:
                selections: list[QTextEdit.ExtraSelection] = []
                document = body.document()
                for term in terms:
                    cursor = document.find(term.strip('"*'))
                    while term and not cursor.isNull():
                        selection = QTextEdit.ExtraSelection()
                        selection.cursor = cursor
                        selection.format.setBackground(color)
                        selections.append(selection)
                        cursor = document.find(term.strip('"*'), cursor)
                body.setExtraSelections(selections)
                found = found or bool(selections)
            if found and first is None:
                first = message
        if first is not None:
            self._follow = False
            QTimer.singleShot(0, lambda: self.ensureWidgetVisible(first, 0, 40))

    # -- following the end ----------------------------------------------------------------------------

    @Slot(int)
    def _on_scrolled(self, value: int) -> None:
        bar = self.verticalScrollBar()
        if self._keep_from_bottom is None:
            self._follow = value >= bar.maximum() - 24
        if value < LOAD_MORE_PIXELS and self.has_older and not self._to_build:
            self._show_more()

    @Slot(int, int)
    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)
        elif self._keep_from_bottom is not None:
            # Older messages grew the transcript above the view: the text being read stays where it was.
            self.verticalScrollBar().setValue(maximum - self._keep_from_bottom)

    def scroll_to_end(self) -> None:
        self._follow = True
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())

    @property
    def following(self) -> bool:
        return self._follow
