"""The window reopens the conversation that was open when it closed, in the real window with the real model and
the real history (offscreen); one deleted since leaves the new chat of a first start, without a word."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core import settings as settings_store
from app.core.history.store import HistoryStore
from app.ui.main_window import MainWindow
from tests.helpers.window import open_window

pytestmark = pytest.mark.gui

SPAIN = [("user", "What is the capital of Spain?")]
FRANCE = [("user", "What is the capital of France?")]


def reopen(qtbot: QtBot, model_path: Path) -> MainWindow:
    """A new window on the same home, with what the last one saved in the settings file when it closed."""
    saved = settings_store.load().settings
    return open_window(qtbot, model_path, last_conversation_id=saved.last_conversation_id)


def close_on_older_of_two(qtbot: QtBot, model_path: Path) -> int:
    """A window with two stored conversations, closed while showing the older one (not the top of the list, so
    that reopening it is no accident of order); returns its id."""
    window = open_window(qtbot, model_path)
    older = window.store.add_conversation(SPAIN, "The capital of Spain is Madrid.")
    window.store.add_conversation(FRANCE, "The capital of France is Paris.")
    window.sidebar.refresh()
    window.open_conversation(older)
    assert window.conversation_id == older
    window.close()
    return older


def selected_ids(window: MainWindow) -> list[int]:
    return [item.data(Qt.ItemDataRole.UserRole) for item in window.sidebar.list.selectedItems()]


def test_the_conversation_open_at_close_is_selected_and_shown_again(qtbot: QtBot, model_path: Path) -> None:
    older = close_on_older_of_two(qtbot, model_path)
    assert settings_store.load().settings.last_conversation_id == older

    window = reopen(qtbot, model_path)
    assert window.conversation_id == older
    assert selected_ids(window) == [older]
    # The transcript is built in short slices, newest first: wait for the whole of it.
    qtbot.waitUntil(lambda: len(window.chat_view.messages) == 2, timeout=10_000)
    assert [(m.role, m.text) for m in window.chat_view.messages] == [
        ("user", "What is the capital of Spain?"),
        ("assistant", "The capital of Spain is Madrid."),
    ]
    assert not window.welcome.card.isVisible()
    assert not window.banner.isVisible()
    # It goes on where it left off: the next question, answered by the model, joins it.
    with qtbot.waitSignal(window.bridge.reply_finished, timeout=60_000):
        window.input.setPlainText("And of Italy?")
        window.send()
    assert window.conversation_id == older
    assert [m.role for m in window.store.messages(older)] == ["user", "assistant", "user", "assistant"]
    assert window.store.count_conversations() == 2

    window.new_conversation()
    window.close()  # closed on a new chat: the next start is a new chat too
    assert settings_store.load().settings.last_conversation_id == 0
    again = reopen(qtbot, model_path)
    assert again.conversation_id is None and not again.chat_view.messages
    again.close()


@pytest.mark.parametrize("emptied", [False, True], ids=["in-the-trash", "trash-emptied"])
def test_a_conversation_deleted_since_leaves_an_empty_chat_and_no_error(
    qtbot: QtBot, model_path: Path, emptied: bool
) -> None:
    older = close_on_older_of_two(qtbot, model_path)
    with HistoryStore() as store:
        store.delete_conversation(older)
        if emptied:
            store.purge_trash()

    window = reopen(qtbot, model_path)
    assert window.conversation_id is None
    assert not window.chat_view.messages
    assert selected_ids(window) == []
    assert not window.banner.isVisible()
    assert window.welcome.card.isVisible()  # the start of a newcomer's empty chat, as before
    window.close()
