"""The input bar: editing a message with Cancel (the draft set aside comes back), and a draft per conversation."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from app.ui.chat_input import InputBar

pytestmark = pytest.mark.gui


@pytest.fixture
def bar(qtbot: QtBot) -> InputBar:
    widget = InputBar()
    qtbot.addWidget(widget)
    widget.show()
    return widget


def test_cancel_brings_back_the_draft_and_changes_nothing(qtbot: QtBot, bar: InputBar) -> None:
    qtbot.keyClicks(bar.input, "half-written thought")
    bar.begin_edit(7, "Capital of Spain?")
    assert bar.editing and bar.editing_id == 7
    assert bar.input.toPlainText() == "Capital of Spain?"
    assert bar.edit_bar.isVisible()
    with qtbot.waitSignal(bar.edit_cancelled):
        qtbot.mouseClick(bar.cancel_edit_button, Qt.MouseButton.LeftButton)
    assert not bar.editing and not bar.edit_bar.isVisible()
    assert bar.input.toPlainText() == "half-written thought"


def test_escape_in_the_box_cancels_an_edit(qtbot: QtBot, bar: InputBar) -> None:
    bar.begin_edit(3, "Question")
    bar.input.setFocus()
    with qtbot.waitSignal(bar.edit_cancelled):
        qtbot.keyClick(bar.input, Qt.Key.Key_Escape)
    assert bar.input.toPlainText() == ""


def test_sending_an_edit_brings_back_the_draft(bar: InputBar) -> None:
    bar.input.setPlainText("draft")
    bar.begin_edit(3, "Question")
    bar.input.setPlainText("Question, better")
    bar.edit_sent()
    assert not bar.editing and bar.input.toPlainText() == "draft"


def test_each_conversation_keeps_its_own_draft(qtbot: QtBot, bar: InputBar) -> None:
    qtbot.keyClicks(bar.input, "for conversation 1")
    bar.switch_draft(1, 2)
    assert bar.input.toPlainText() == ""  # never carried into another chat
    qtbot.keyClicks(bar.input, "for conversation 2")
    bar.switch_draft(2, None)
    assert bar.input.toPlainText() == ""  # a new chat starts empty
    bar.switch_draft(None, 1)
    assert bar.input.toPlainText() == "for conversation 1"
    bar.switch_draft(1, 2)
    assert bar.input.toPlainText() == "for conversation 2"
    assert bar.draft_of(1) == "for conversation 1"


def test_switching_while_editing_keeps_the_draft_not_the_edit(bar: InputBar) -> None:
    bar.input.setPlainText("my draft")
    bar.begin_edit(5, "Old question")
    bar.switch_draft(1, 2)
    assert not bar.editing
    assert bar.draft_of(1) == "my draft"
    assert bar.input.toPlainText() == ""


def test_the_edit_bar_fits_under_a_narrow_window(qtbot: QtBot) -> None:
    host = QWidget()
    qtbot.addWidget(host)
    bar = InputBar(host)
    host.resize(480, 200)
    host.show()
    bar.resize(460, 160)
    bar.begin_edit(1, "Question")
    assert bar.cancel_edit_button.isVisible()
    assert bar.cancel_edit_button.geometry().right() <= bar.width()
