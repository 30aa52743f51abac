"""The "< 2/3 >" switcher: it shows a message's place among its versions and asks for the neighbouring one."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.history.records import BranchPosition
from app.ui.transcript.branch_switcher import BranchSwitcher
from app.ui.transcript.chat_view import ChatView, HistoryEntry
from tests.helpers.xvfb import run_under_xvfb

pytestmark = pytest.mark.gui


def test_arrows_ask_for_the_neighbouring_version(qtbot: QtBot) -> None:
    switcher = BranchSwitcher()
    qtbot.addWidget(switcher)
    switcher.set_position(BranchPosition((11, 12, 13), 1))
    switcher.show()
    assert switcher.label.text() == "2/3"
    with qtbot.waitSignal(switcher.switch_requested) as previous:
        qtbot.mouseClick(switcher.previous_button, Qt.MouseButton.LeftButton)
    assert previous.args == [11]
    with qtbot.waitSignal(switcher.switch_requested) as following:
        qtbot.mouseClick(switcher.next_button, Qt.MouseButton.LeftButton)
    assert following.args == [13]
    switcher.set_position(BranchPosition((11, 12, 13), 2))
    assert not switcher.next_button.isEnabled() and switcher.previous_button.isEnabled()


def test_a_message_without_other_versions_shows_no_switcher(qtbot: QtBot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    view.show()
    view.show_history(
        [
            HistoryEntry("user", "Question", message_id=1),
            HistoryEntry("assistant", "Answer", message_id=3, branch=BranchPosition((2, 3), 1)),
        ]
    )
    qtbot.waitUntil(lambda: len(view.messages) == 2, timeout=2000)
    question, answer = view.messages
    qtbot.waitUntil(answer.isVisible, timeout=2000)  # a layout shows a new child at the next event
    assert not question.branch_switcher.isVisibleTo(view)
    assert answer.branch_switcher.isVisibleTo(view) and answer.branch_switcher.label.text() == "2/2"
    with qtbot.waitSignal(view.branch_requested) as asked:
        qtbot.mouseClick(answer.branch_switcher.previous_button, Qt.MouseButton.LeftButton)
    assert asked.args == [answer, 2]
    view.replace_from(answer, [HistoryEntry("assistant", "Other answer", message_id=2)])
    assert [m.text for m in view.messages] == ["Question", "Other answer"]
    assert view.messages[-1].message_id == 2


ROOT = Path(__file__).resolve().parents[3]
WINDOW_PNG = ROOT / "test-output" / "branch-switcher-window.png"
MESSAGE_PNG = ROOT / "test-output" / "branch-switcher-message.png"


def test_screenshot_of_a_message_showing_its_versions() -> None:
    WINDOW_PNG.parent.mkdir(exist_ok=True)
    for png in (WINDOW_PNG, MESSAGE_PNG):
        png.unlink(missing_ok=True)
    result = run_under_xvfb(["-m", "tests.ui.screenshot_branch_switcher", str(WINDOW_PNG), str(MESSAGE_PNG)])
    assert result.returncode == 0, result.stdout[-500:] + result.stderr[-2000:]

    from PySide6.QtGui import QImage

    window, message = QImage(str(WINDOW_PNG)), QImage(str(MESSAGE_PNG))
    assert window.width() >= 900 and message.width() >= 300
    # A real picture, not a blank one: many distinct colours across the window.
    colours = {
        window.pixel(x, y) for x in range(0, window.width(), 16) for y in range(0, window.height(), 16)
    }
    assert len(colours) > 10
    print(f"screenshots: {WINDOW_PNG} {MESSAGE_PNG}")
