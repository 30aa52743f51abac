"""The toolbar's mode buttons (Chat, Summarize, Code) with real widgets offscreen and a real history: a mode clicked
on a conversation that has messages applies to it, as presets do in the peers' windows, and says so: its row in the
list names the new mode and the status bar says what changed and how to undo it, which clicking the old mode does.
No model is needed: the buttons' effect on the conversation is the subject."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton
from pytestqt.qtbot import QtBot

from app.core.history.store import HistoryStore
from app.core.modes import Mode
from app.core.settings import Settings
from app.ui.conversation_list import DETAILS_ROLE
from app.ui.main_window import MainWindow

pytestmark = pytest.mark.gui

LEFT = Qt.MouseButton.LeftButton


def mode_button(window: MainWindow, mode: Mode) -> QAbstractButton:
    return next(b for b in window.mode_buttons.buttons() if b.property("mode") == mode.value)


def row_details(window: MainWindow, conversation_id: int) -> str:
    row = window.sidebar.row_of(conversation_id)
    assert row is not None
    return str(row.data(DETAILS_ROLE))


def test_a_mode_clicked_on_a_conversation_with_messages_is_said_and_undone_by_the_old_mode(
    qtbot: QtBot,
) -> None:
    store = HistoryStore()
    conversation = store.create_conversation(mode=Mode.CHAT.value, title="Capitals")
    store.add_message(conversation.id, "user", "What is the capital of Spain?")
    store.add_message(conversation.id, "assistant", "Madrid.")
    window = MainWindow(settings=Settings(), store=store, open_default_model=False)
    qtbot.addWidget(window)
    window.show()
    row = window.sidebar.row_of(conversation.id)
    assert row is not None
    qtbot.mouseClick(
        window.sidebar.list.viewport(), LEFT, pos=window.sidebar.list.visualItemRect(row).center()
    )
    qtbot.waitUntil(lambda: window.conversation_id == conversation.id, timeout=5_000)
    assert window.statusBar().currentMessage() == ""
    assert Mode.CHAT.label in row_details(window, conversation.id)

    qtbot.mouseClick(mode_button(window, Mode.CODE), LEFT)
    assert store.get_conversation(conversation.id).mode == Mode.CODE.value  # applied to this conversation...
    note = window.statusBar().currentMessage()
    assert Mode.CODE.label in note and Mode.CHAT.label in note  # ...said, naming the mode that undoes it...
    assert Mode.CODE.label in row_details(window, conversation.id)  # ...and shown on its row
    assert window.conversation_id == conversation.id  # the same conversation, not a new one

    qtbot.mouseClick(mode_button(window, Mode.CHAT), LEFT)  # the undo the note names
    assert store.get_conversation(conversation.id).mode == Mode.CHAT.value
    assert Mode.CHAT.label in row_details(window, conversation.id)
    assert window.statusBar().currentMessage() != note

    # A new chat has nothing to change: its mode is chosen silently. The note about the other one is gone.
    window.new_conversation()
    assert window.statusBar().currentMessage() == ""
    qtbot.mouseClick(mode_button(window, Mode.SUMMARIZE), LEFT)
    assert window.mode is Mode.SUMMARIZE and window.statusBar().currentMessage() == ""
    assert store.get_conversation(conversation.id).mode == Mode.CHAT.value
    window.close()
