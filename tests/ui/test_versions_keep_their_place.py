"""Versions keep the person's place in the real window: going back to an older version of an edited question
with its "< 1/2" shows the path last viewed there (the follow-up asked under it), not the newest reply below
it; each version keeps its own path, in the window, after reopening, and in the export."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QToolButton
from pytestqt.qtbot import QtBot

from app.core.history.store import HistoryStore
from app.core.settings import Settings
from app.ui.main_window import MainWindow

pytestmark = pytest.mark.gui

FOLLOW_UP = ["Name a planet.", "Mars.", "How far is it from the Sun?", "About 228 million km."]
EDITED = ["Name a moon.", "Titan."]
REWRITTEN = ["Name a planet.", "Jupiter."]


def conversation_with_versions(store: HistoryStore) -> int:
    """A first question with a follow-up under its reply; the reply written again (the newest path below the
    question) after which the person went back to the follow-up; then the question edited (on screen)."""
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, "user", FOLLOW_UP[0]).id
    reply = store.add_message(conversation.id, "assistant", FOLLOW_UP[1]).id
    store.add_message(conversation.id, "user", FOLLOW_UP[2])
    store.add_message(conversation.id, "assistant", FOLLOW_UP[3])
    store.set_branch_end(conversation.id, question)
    store.add_message(conversation.id, "assistant", REWRITTEN[1])
    store.switch_branch(conversation.id, reply)
    store.add_message(conversation.id, "user", EDITED[0], parent_id=None)
    store.add_message(conversation.id, "assistant", EDITED[1])
    return conversation.id


def shown(window: MainWindow) -> list[str]:
    return [m.text for m in window.chat_view.messages]


def arrow(window: MainWindow, message: int, step: int) -> Callable[[], QToolButton]:
    """The "<" (step -1) or ">" (+1) of the ``message``-th message shown, looked up when wanted: a switch
    rebuilds the messages from the first that differs."""

    def button() -> QToolButton:
        switcher = window.chat_view.messages[message].branch_switcher
        return switcher.previous_button if step < 0 else switcher.next_button

    return button


def click(qtbot: QtBot, window: MainWindow, button: Callable[[], QToolButton], expected: list[str]) -> None:
    """Click the button as a person does, once it is on screen, and wait for the transcript to show
    ``expected``."""
    qtbot.waitUntil(lambda: button().isVisible() and button().isEnabled(), timeout=5_000)
    qtbot.mouseClick(button(), Qt.MouseButton.LeftButton)

    def showing_expected() -> None:  # an assertion, so a failure says what was shown instead
        assert shown(window) == expected

    qtbot.waitUntil(showing_expected, timeout=5_000)


def position(window: MainWindow, message: int) -> str:
    return window.chat_view.messages[message].branch_switcher.label.text()


def test_going_back_to_an_edited_question_shows_the_follow_up_again(qtbot: QtBot) -> None:
    store = HistoryStore()
    conversation_id = conversation_with_versions(store)
    window = MainWindow(settings=Settings(), store=store, open_default_model=False)
    qtbot.addWidget(window)
    window.show()
    window.open_conversation(conversation_id)
    qtbot.waitUntil(lambda: shown(window) == EDITED, timeout=5_000)

    previous_question, next_question = arrow(window, 0, -1), arrow(window, 0, +1)
    assert position(window, 0) == "2/2"
    for _ in range(2):  # back and forth: each version of the question keeps its own path
        click(qtbot, window, previous_question, FOLLOW_UP)  # not the newest reply, "Jupiter."
        assert position(window, 0) == "1/2"
        assert position(window, 1) == "1/2"
        click(qtbot, window, next_question, EDITED)

    # The rewritten reply chosen under the first question is what that question shows from then on, and the
    # first reply still leads to its follow-up.
    click(qtbot, window, previous_question, FOLLOW_UP)
    click(qtbot, window, arrow(window, 1, +1), REWRITTEN)
    click(qtbot, window, next_question, EDITED)
    click(qtbot, window, previous_question, REWRITTEN)
    click(qtbot, window, arrow(window, 1, -1), FOLLOW_UP)
    click(qtbot, window, next_question, EDITED)
    click(qtbot, window, previous_question, FOLLOW_UP)

    # What the window shows is the branch on screen: reopened, and exported, it is the same.
    assert [m.content for m in store.messages(conversation_id)] == FOLLOW_UP
    exported = store.export_markdown([conversation_id])
    assert all(text in exported for text in FOLLOW_UP) and "Jupiter." not in exported
    window.new_conversation()
    window.open_conversation(conversation_id)
    qtbot.waitUntil(lambda: shown(window) == FOLLOW_UP, timeout=5_000)
    click(qtbot, window, next_question, EDITED)
    click(qtbot, window, previous_question, FOLLOW_UP)
    window.close()
