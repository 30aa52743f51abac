"""The input row under the transcript: the message box, Attach, and Send (which turns into Stop)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QPushButton, QWidget

from app.core.modes import Mode

PLACEHOLDERS = {
    Mode.CHAT: "Message the model. Enter sends, Shift+Enter starts a new line.",
    Mode.SUMMARIZE: "Paste text to summarize, or drop a document onto the window.",
    Mode.CODE: "Describe the code you need, or paste code to explain or fix.",
}


class ChatInput(QPlainTextEdit):
    """Enter sends; Shift+Enter starts a new line."""

    submitted = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
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
    """

    send_requested = Signal()
    stop_requested = Signal()
    attach_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.input = ChatInput()
        self.input.setPlaceholderText(PLACEHOLDERS[Mode.CHAT])
        self.input.setAccessibleName("Message")
        self.input.setFixedHeight(84)
        self.input.submitted.connect(self.send_requested)
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
