"""The sidebar's conversation rows: a second line that tells like titles apart, and renaming in place.

Real widgets in a real window (no model loaded: the rows are the list's own), a real history store, real keys
and mouse clicks.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QApplication, QLineEdit, QListWidgetItem
from pytestqt.qtbot import QtBot

from app.core.history.records import to_ms
from app.core.history.store import HistoryStore
from app.core.settings import Settings
from app.ui.conversation_list import DETAILS_ROLE, activity_label, model_label
from app.ui.main_window import MainWindow

pytestmark = pytest.mark.gui

MODEL_FILE = "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"


@pytest.fixture
def window(qtbot: QtBot) -> Iterator[MainWindow]:
    win = MainWindow(settings=Settings(), store=HistoryStore(), open_default_model=False)
    qtbot.addWidget(win)
    win.show()
    win.activateWindow()
    qtbot.waitExposed(win)
    yield win
    win.close()


def _row(window: MainWindow, conversation_id: int) -> QListWidgetItem:
    item = window.sidebar.row_of(conversation_id)
    assert item is not None, f"conversation {conversation_id} is not in the list"
    return item


def _details(window: MainWindow, conversation_id: int) -> str:
    return str(_row(window, conversation_id).data(DETAILS_ROLE))


def _start_editing_with_f2(qtbot: QtBot, window: MainWindow, conversation_id: int) -> QLineEdit:
    rows = window.sidebar.list
    rows.setCurrentItem(_row(window, conversation_id))
    rows.setFocus()
    qtbot.keyClick(rows, Qt.Key.Key_F2)
    return _editor(qtbot, window)


def _editor(qtbot: QtBot, window: MainWindow) -> QLineEdit:
    rows = window.sidebar.list
    qtbot.waitUntil(lambda: rows.state() == QAbstractItemView.State.EditingState, timeout=2000)
    editor = QApplication.focusWidget()
    assert isinstance(editor, QLineEdit) and rows.isAncestorOf(editor)
    return editor


def test_the_second_line_shows_when_mode_and_model(qtbot: QtBot, window: MainWindow) -> None:
    store = window.store
    coded = store.create_conversation(title="Parse a CSV", mode="code", model=MODEL_FILE)
    store.add_message(coded.id, "user", "Read a CSV file in Python.")
    unknown = store.create_conversation(title="No model yet", mode="summarize")
    window.sidebar.refresh()
    today = f"{datetime.now():%H:%M}"[:2]  # the hour: the minute may turn while the test runs
    details = _details(window, coded.id)
    print(f"second line: {details!r}")
    assert details.startswith(today) and " · Code · qwen2.5-0.5b-instruct-q4_k_m" in details
    assert _details(window, unknown.id).endswith(" · Summarize · unknown")
    rows = window.sidebar.list
    row = _row(window, coded.id)
    title_only = rows.fontMetrics().height()
    assert rows.visualItemRect(row).height() > 1.5 * title_only  # room for the second line
    assert rows.visualItemRect(row).width() <= rows.viewport().width()


def test_two_conversations_with_one_title_are_told_apart(qtbot: QtBot, window: MainWindow) -> None:
    first = window.store.create_conversation(title="Trip plans", mode="chat", model=MODEL_FILE)
    second = window.store.create_conversation(title="Trip plans", mode="code", model="/m/smollm2-135m.gguf")
    window.sidebar.refresh()
    assert _row(window, first.id).text() == _row(window, second.id).text() == "Trip plans"
    assert _details(window, first.id) != _details(window, second.id)


def test_the_date_is_the_time_today_the_day_this_year_and_the_full_date_before(
    qtbot: QtBot,
) -> None:
    now = datetime(2026, 6, 1, 18, 0)
    assert activity_label(to_ms(datetime(2026, 6, 1, 9, 7)), now) == "09:07"
    assert activity_label(to_ms(datetime(2026, 3, 4, 9, 7)), now) == "Mar 4"
    assert activity_label(to_ms(datetime(2025, 3, 4, 9, 7)), now) == "2025-03-04"
    assert model_label("") == "unknown"
    assert model_label("C:/models/Phi-3.Q4.GGUF") == "Phi-3.Q4"


def test_f2_then_a_name_then_enter_renames_in_the_store(qtbot: QtBot, window: MainWindow) -> None:
    conversation = window.store.create_conversation(title="Trip plans")
    window.sidebar.refresh()
    editor = _start_editing_with_f2(qtbot, window, conversation.id)
    assert editor.text() == "Trip plans"
    qtbot.keyClicks(editor, "Lisbon in May")  # the whole old title is selected: typing replaces it
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.sidebar.list.state() != QAbstractItemView.State.EditingState, timeout=2000)
    assert window.store.get_conversation(conversation.id).title == "Lisbon in May"
    assert _row(window, conversation.id).text() == "Lisbon in May"


def test_esc_leaves_the_name_and_does_not_reach_the_window(qtbot: QtBot, window: MainWindow) -> None:
    conversation = window.store.create_conversation(title="Trip plans")
    window.sidebar.refresh()
    editor = _start_editing_with_f2(qtbot, window, conversation.id)
    qtbot.keyClicks(editor, "Something else")
    qtbot.keyClick(editor, Qt.Key.Key_Escape)
    # Had the window's Esc shortcut (stop the reply) taken the key, the editor would still be open here.
    qtbot.waitUntil(lambda: window.sidebar.list.state() != QAbstractItemView.State.EditingState, timeout=2000)
    assert window.store.get_conversation(conversation.id).title == "Trip plans"
    assert _row(window, conversation.id).text() == "Trip plans"


def test_an_empty_name_is_refused_and_the_old_one_kept(qtbot: QtBot, window: MainWindow) -> None:
    conversation = window.store.create_conversation(title="Trip plans")
    window.sidebar.refresh()
    editor = _start_editing_with_f2(qtbot, window, conversation.id)
    qtbot.keyClick(editor, Qt.Key.Key_Backspace)  # clears the selected title
    assert editor.text() == ""
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.sidebar.list.state() != QAbstractItemView.State.EditingState, timeout=2000)
    assert window.store.get_conversation(conversation.id).title == "Trip plans"
    assert _row(window, conversation.id).text() == "Trip plans"


def test_a_double_click_starts_editing(qtbot: QtBot, window: MainWindow) -> None:
    conversation = window.store.create_conversation(title="Trip plans")
    window.sidebar.refresh()
    rows = window.sidebar.list
    centre = rows.visualItemRect(_row(window, conversation.id)).center()
    qtbot.mouseClick(rows.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseDClick(rows.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    editor = _editor(qtbot, window)
    assert editor.text() == "Trip plans"
    qtbot.keyClicks(editor, "Renamed by mouse")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(
        lambda: window.store.get_conversation(conversation.id).title == "Renamed by mouse", timeout=2000
    )


def test_the_menus_rename_edits_the_row_in_place(qtbot: QtBot, window: MainWindow) -> None:
    conversation = window.store.create_conversation(title="Trip plans")
    window.sidebar.refresh()
    menu = window.sidebar.context_menu(conversation.id)  # the menu a right click on the conversation opens
    next(action for action in menu.actions() if action.text() == "Rename").trigger()
    editor = _editor(qtbot, window)
    assert editor.text() == "Trip plans"
    qtbot.keyClick(editor, Qt.Key.Key_Escape)
