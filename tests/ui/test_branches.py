"""Branches in the real window with the real model: an edit with Cancel, an edit sent as a new version, and
"< 2/2 >" moving between them; the engine is sent the branch on screen. And a draft per conversation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.history.store import HistoryStore
from app.core.settings import Settings
from app.ui.main_window import MainWindow
from tests.helpers.window import open_window

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot: QtBot, model_path: Path) -> Iterator[MainWindow]:
    win = open_window(qtbot, model_path, sampling={"max_tokens": 24})
    yield win
    win.close()


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.input.setFocus()
    window.input.setPlainText(text)
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.bridge.is_generating, timeout=60_000)


def shown(window: MainWindow) -> list[str]:
    return [m.text for m in window.chat_view.messages]


def test_edit_cancel_then_edit_and_switch_between_versions(qtbot: QtBot, window: MainWindow) -> None:
    send(qtbot, window, "What is the capital of Spain?")
    spain = shown(window)
    assert len(spain) == 2 and spain[1]
    conversation_id = window.conversation_id
    assert conversation_id is not None
    question = window.chat_view.messages[0]

    # Edit, then Cancel: the question and its reply stay as they were, and the draft comes back.
    window.input.setPlainText("a draft I was writing")
    qtbot.mouseClick(question.edit_button, Qt.MouseButton.LeftButton)
    assert window.input.toPlainText() == "What is the capital of Spain?"
    assert window.input_bar.edit_bar.isVisible()
    qtbot.mouseClick(window.input_bar.cancel_edit_button, Qt.MouseButton.LeftButton)
    assert window.input.toPlainText() == "a draft I was writing"
    assert shown(window) == spain
    assert len(window.store.all_messages(conversation_id)) == 2

    # Edit and send: a new version of the question, answered; the old one is a click away.
    qtbot.mouseClick(window.chat_view.messages[0].edit_button, Qt.MouseButton.LeftButton)
    send(qtbot, window, "What is the capital of France?")
    assert window.input.toPlainText() == "a draft I was writing"
    france = shown(window)
    assert france[0] == "What is the capital of France?" and france[1] and len(france) == 2
    switcher = window.chat_view.messages[0].branch_switcher
    assert switcher.isVisible() and switcher.label.text() == "2/2"
    france_sent = [m["content"] for m in window.conversation.engine_messages()[1:]]
    assert france_sent == france  # the question's other version is not sent

    qtbot.mouseClick(switcher.previous_button, Qt.MouseButton.LeftButton)
    assert shown(window) == spain
    assert window.chat_view.messages[0].branch_switcher.label.text() == "1/2"
    assert [m["content"] for m in window.conversation.engine_messages()[1:]] == spain
    assert [m.content for m in window.store.messages(conversation_id)] == spain  # remembered in the history

    qtbot.mouseClick(window.chat_view.messages[0].branch_switcher.next_button, Qt.MouseButton.LeftButton)
    assert shown(window) == france
    assert len(window.store.all_messages(conversation_id)) == 4  # nothing was lost

    # Editing a question that has turns after it: a third version, and the turns stay with the second.
    send(qtbot, window, "And of Italy?")
    france_and_italy = shown(window)
    assert len(france_and_italy) == 4
    qtbot.mouseClick(window.chat_view.messages[0].edit_button, Qt.MouseButton.LeftButton)
    send(qtbot, window, "What is the capital of Germany?")
    assert shown(window)[0] == "What is the capital of Germany?" and len(shown(window)) == 2
    assert window.chat_view.messages[0].branch_switcher.label.text() == "3/3"
    qtbot.mouseClick(window.chat_view.messages[0].branch_switcher.previous_button, Qt.MouseButton.LeftButton)
    assert shown(window) == france_and_italy  # the version's latest path, follow-up included


def test_a_draft_stays_with_its_conversation(qtbot: QtBot, window: MainWindow) -> None:
    send(qtbot, window, "Name a colour.")
    first = window.conversation_id
    assert first is not None
    qtbot.keyClicks(window.input, "unsent words for the first chat")
    window.new_conversation()
    assert window.input.toPlainText() == ""  # not carried into another chat
    window.open_conversation(first)
    assert window.input.toPlainText() == "unsent words for the first chat"


def test_a_search_hit_in_another_version_shows_that_version(qtbot: QtBot) -> None:
    store = HistoryStore()
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, "user", "Tell me about lighthouses.")
    store.add_message(conversation.id, "assistant", "They guide ships.")
    store.add_message(conversation.id, "assistant", "They stand on coasts.", parent_id=question.id)
    window = MainWindow(settings=Settings(), store=store, open_default_model=False)
    qtbot.addWidget(window)
    window.show()
    window.conversation.show(conversation.id, ["ships"])
    qtbot.waitUntil(lambda: len(window.chat_view.messages) == 2, timeout=5_000)
    assert shown(window)[1] == "They guide ships."
    assert window.chat_view.messages[1].branch_switcher.label.text() == "1/2"
    window.close()
