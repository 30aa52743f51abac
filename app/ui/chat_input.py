"""The input row under the transcript: the message box, Attach, and Send (which turns into Stop); the bar that
says a message is being edited, with its Cancel; and each conversation's unsent draft.

Editing puts the message's text in the box and sets the person's own draft aside: Cancel brings the draft back
and leaves the conversation as it was. A draft belongs to its conversation: switching conversations keeps each
one's text for when it is shown again, and never carries it into another.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from app.core.modes import Mode

PLACEHOLDERS = {
    Mode.CHAT: "Message the model. Enter sends, Shift+Enter starts a new line.",
    Mode.SUMMARIZE: "Paste text to summarize, or drop a document onto the window.",
    Mode.CODE: "Describe the code you need, or paste code to explain or fix.",
}


class ChatInput(QPlainTextEdit):
    """Enter sends; Shift+Enter starts a new line; Esc cancels an edit (and is otherwise the window's Stop)."""

    submitted = Signal()
    escape_pressed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.claims_escape = False  # while a message is edited, Esc is Cancel, not the window's Stop

    def event(self, event: QEvent) -> bool:
        if (
            self.claims_escape
            and event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Escape
        ):
            event.accept()  # so the key comes here instead of triggering the window's shortcut
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if self.claims_escape and event.key() == Qt.Key.Key_Escape:
            self.escape_pressed.emit()
            return
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self.submitted.emit()
            return
        super().keyPressEvent(event)


class InputBar(QWidget):
    """Signals:
    send_requested(): Enter in the box, or Send.
    stop_requested(): Stop (the Send button while a reply or summary is being written).
    attach_requested(): Attach….
    edit_cancelled(): Cancel on the editing bar; the draft is back in the box.
    """

    send_requested = Signal()
    stop_requested = Signal()
    attach_requested = Signal()
    edit_cancelled = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(4)
        self.edit_bar = QWidget()
        self.edit_bar.setObjectName("editBar")
        bar = QHBoxLayout(self.edit_bar)
        bar.setContentsMargins(0, 0, 0, 0)
        self.edit_label = QLabel(
            "Editing your message: Send keeps the old version too (switch with < >), Cancel changes nothing."
        )
        self.edit_label.setWordWrap(True)
        bar.addWidget(self.edit_label, 1)
        self.cancel_edit_button = QPushButton("Cancel")
        self.cancel_edit_button.setAccessibleName("Cancel editing")
        self.cancel_edit_button.setToolTip("Stop editing; the message and its reply stay as they were (Esc)")
        self.cancel_edit_button.clicked.connect(self.cancel_edit)
        bar.addWidget(self.cancel_edit_button)
        self.edit_bar.hide()
        column.addWidget(self.edit_bar)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        column.addLayout(row)
        self.editing_id: int | None = None  # the message being edited (a new version of it will be sent)
        self._set_aside = ""  # the person's draft while they edit a message
        # The unsent text of the conversations not shown (None: a new conversation, not stored yet).
        self._drafts: dict[int | None, str] = {}
        self.input = ChatInput()
        self.input.setPlaceholderText(PLACEHOLDERS[Mode.CHAT])
        self.input.setAccessibleName("Message")
        self.input.setFixedHeight(84)
        self.input.submitted.connect(self.send_requested)
        self.input.escape_pressed.connect(self.cancel_edit)
        row.addWidget(self.input, 1)
        self.attach_button = QPushButton("Attach…")
        self.attach_button.setAccessibleName("Attach documents")
        self.attach_button.setToolTip(
            "Attach documents to summarize and ask about (or drop them on the window)"
        )
        self.attach_button.clicked.connect(self.attach_requested)
        row.addWidget(self.attach_button)
        self.send_button = QPushButton("Send")
        self.send_button.setAccessibleName("Send message")
        self.send_button.setDefault(True)
        self.send_button.setMinimumWidth(84)
        self.send_button.clicked.connect(self._on_send_button)
        row.addWidget(self.send_button)
        self._generating = False
        QWidget.setTabOrder(self.input, self.attach_button)
        QWidget.setTabOrder(self.attach_button, self.send_button)

    def set_mode(self, mode: Mode) -> None:
        self.input.setPlaceholderText(PLACEHOLDERS[mode])
        # Qt repaints the placeholder only when it appears or disappears, not when its text changes: without
        # this the old mode's text stayed until the box was next emptied (after sending).
        self.input.viewport().update()

    def set_generating(self, generating: bool) -> None:
        self._generating = generating
        self.send_button.setText("Stop" if generating else "Send")
        self.send_button.setAccessibleName("Stop the reply" if generating else "Send message")
        self.send_button.setToolTip("Stop the reply (Esc)" if generating else "Send (Enter)")

    def _on_send_button(self) -> None:
        (self.stop_requested if self._generating else self.send_requested).emit()

    # -- editing a message -------------------------------------------------------------------------------

    @property
    def editing(self) -> bool:
        return self.editing_id is not None

    def begin_edit(self, message_id: int, text: str) -> None:
        """Put message ``message_id``'s text in the box to edit, setting the draft aside."""
        if not self.editing:
            self._set_aside = self.input.toPlainText()
        self.editing_id = message_id
        self.input.claims_escape = True
        self.input.setPlainText(text)
        self.input.moveCursor(self.input.textCursor().MoveOperation.End)
        self.edit_bar.show()
        self.input.setFocus()

    def cancel_edit(self) -> None:
        """Stop editing: the draft set aside is back, and nothing else changed."""
        if not self.editing:
            return
        self._end_edit()
        self.edit_cancelled.emit()

    def edit_sent(self) -> None:
        """The edited message went out as a new version: the draft set aside is back in the box."""
        self._end_edit()

    def _end_edit(self) -> None:
        self.editing_id = None
        self.input.claims_escape = False
        self.edit_bar.hide()
        self.input.setPlainText(self._set_aside)
        self.input.moveCursor(self.input.textCursor().MoveOperation.End)
        self._set_aside = ""

    # -- drafts ------------------------------------------------------------------------------------------

    def switch_draft(self, leaving: int | None, showing: int | None) -> None:
        """Another conversation is shown: keep the box's text as ``leaving``'s draft (an edit under way is
        cancelled first, so its draft is the one kept) and put ``showing``'s draft in the box."""
        self.cancel_edit()
        text = self.input.toPlainText()
        if text.strip():
            self._drafts[leaving] = text
        else:
            self._drafts.pop(leaving, None)
        self.input.setPlainText(self._drafts.pop(showing, ""))
        self.input.moveCursor(self.input.textCursor().MoveOperation.End)

    def draft_of(self, conversation_id: int | None) -> str:
        """The unsent text kept for a conversation that is not shown."""
        return self._drafts.get(conversation_id, "")
