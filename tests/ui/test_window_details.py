"""Small things a person notices in the window: size, shortcuts, confirmations, the sidebar, the placeholder.

These windows load no model: the details are the window's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QObject, QPoint, QRect, Qt, QUrl
from PySide6.QtGui import QAction, QPaintEvent
from PySide6.QtWidgets import QApplication, QFileDialog, QWidget
from pytestqt.qtbot import QtBot

from app.core.history.store import HistoryStore
from app.core.modes import Mode
from app.core.settings import Settings
from app.ui.chat_input import PLACEHOLDERS
from app.ui.main_window import MINIMUM_SIZE, MainWindow

pytestmark = pytest.mark.gui


def _window(qtbot: QtBot, **settings: object) -> MainWindow:
    window = MainWindow(settings=Settings(**settings), store=HistoryStore(), open_default_model=False)  # type: ignore[arg-type]
    qtbot.addWidget(window)
    window.show()
    window.activateWindow()
    qtbot.waitExposed(window)
    return window


@pytest.fixture
def window(qtbot: QtBot) -> Iterator[MainWindow]:
    win = _window(qtbot)
    yield win
    win.close()


def test_the_window_has_a_minimum_size_and_its_layout_holds_there(qtbot: QtBot, window: MainWindow) -> None:
    window.resize(500, 400)  # the size that broke it: now held at the minimum
    qtbot.wait(50)
    QApplication.processEvents()
    size = window.size()
    print(
        f"asked 500x400, got {size.width()}x{size.height()} (minimum {MINIMUM_SIZE.width()}x{MINIMUM_SIZE.height()})"
    )
    assert size.width() >= MINIMUM_SIZE.width() and size.height() >= MINIMUM_SIZE.height()
    window.resize(MINIMUM_SIZE)
    qtbot.wait(50)
    frame = window.rect()
    for part in (window.input, window.send_button, window.input_bar.attach_button, window.sidebar.list):
        place = part.rect().translated(part.mapTo(window, part.rect().topLeft()))
        assert part.isVisible() and frame.contains(place), (part.accessibleName(), place, frame)
    assert window.send_button.width() >= window.send_button.minimumSizeHint().width()
    assert window.chat_view.viewport().width() >= 300 and window.chat_view.viewport().height() >= 150
    assert window.input.width() >= 150


def _place(window: MainWindow, part: QWidget) -> QRect:
    """Where ``part`` is, in the window's coordinates."""
    return QRect(part.mapTo(window, QPoint(0, 0)), part.size())


def _shown_at_the_minimum(qtbot: QtBot, window: MainWindow) -> None:
    window.resize(MINIMUM_SIZE)  # held at the window's minimum, whatever that is now
    qtbot.waitUntil(lambda: window.size() == MINIMUM_SIZE.expandedTo(window.minimumSize()), timeout=5_000)
    qtbot.wait(100)  # the layouts' requests, posted to the event loop
    QApplication.processEvents()


def _overlaps(window: MainWindow) -> list[str]:
    """What covers what, or is cut at the window's edge: the conversation list, the centre column (the welcome
    card or chat, the message box, Attach, Send) and the Library dock while it is docked."""
    centre = window.input_bar.parentWidget()
    assert centre is not None
    dock = window.libraries.dock
    columns = {"conversation list": window.sidebar, "centre column": centre}
    if dock.isVisible() and not dock.isFloating():
        columns["Library dock"] = dock
    places = {name: _place(window, part) for name, part in columns.items()}
    frame = window.rect()
    problems = [
        f"{name} {place} is cut by the window {frame}"
        for name, place in places.items()
        if not frame.contains(place)
    ]
    names = list(places)
    for number, name in enumerate(names):
        for other in names[number + 1 :]:
            if places[name].intersects(places[other]):
                problems.append(f"{name} {places[name]} overlaps {other} {places[other]}")
    parts = {
        "message box": window.input,
        "Attach": window.input_bar.attach_button,
        "Send": window.send_button,
        "chat": window.chat_view,
        "welcome card": window.welcome.area,
    }
    for name, part in parts.items():
        if part.isVisible() and not places["centre column"].contains(_place(window, part)):
            problems.append(
                f"{name} {_place(window, part)} is outside the centre column {places['centre column']}"
            )
        if part.isVisible() and part.width() < part.minimumSizeHint().width():
            problems.append(
                f"{name} is {part.width()} px wide, narrower than its {part.minimumSizeHint().width()}"
            )
    return problems


def test_with_the_library_docked_the_smallest_window_still_fits_the_list_the_chat_and_the_library(
    qtbot: QtBot, window: MainWindow
) -> None:
    """The bug: at 640x480 with the Library shown, the list covered the centre's left edge and Send was cut."""
    dock = window.libraries.dock
    _shown_at_the_minimum(qtbot, window)
    window.libraries.action.trigger()
    assert dock.isVisible()
    qtbot.waitUntil(lambda: window.width() >= window.minimumWidth() > MINIMUM_SIZE.width(), timeout=5_000)
    print(f"opening the Library at the minimum grew the window to {window.width()}x{window.height()}")
    _shown_at_the_minimum(qtbot, window)
    print(f"minimum with the Library docked: {window.minimumWidth()}x{window.minimumHeight()}")
    needed = sum(part.minimumSizeHint().width() for part in (window.centralWidget(), dock))
    assert window.minimumWidth() >= needed
    assert _overlaps(window) == []
    assert window.rect().contains(_place(window, window.send_button))

    # A floating Library is a window of its own: the main window keeps its minimum without it.
    dock.setFloating(True)
    qtbot.waitUntil(lambda: window.minimumSize() == MINIMUM_SIZE, timeout=5_000)
    _shown_at_the_minimum(qtbot, window)
    assert window.size() == MINIMUM_SIZE and _overlaps(window) == []
    dock.setFloating(False)
    qtbot.waitUntil(lambda: window.minimumWidth() > MINIMUM_SIZE.width(), timeout=5_000)
    _shown_at_the_minimum(qtbot, window)
    assert _overlaps(window) == []

    # Closed with Library in the toolbar: the minimum is the window's own again, and the window the size it had
    # before the Library widened it; opened again, the Library has its room again.
    window.libraries.action.trigger()
    assert not dock.isVisible()
    qtbot.waitUntil(lambda: window.minimumSize() == MINIMUM_SIZE, timeout=5_000)
    qtbot.waitUntil(lambda: window.size() == MINIMUM_SIZE, timeout=5_000)
    assert _overlaps(window) == []
    window.libraries.action.trigger()
    assert dock.isVisible()
    _shown_at_the_minimum(qtbot, window)
    assert _overlaps(window) == []


def test_ctrl_q_quits(qtbot: QtBot, window: MainWindow) -> None:
    window.input.setFocus()
    qtbot.keyClick(window.input, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=2000)
    assert window._closed  # closed through closeEvent: settings saved, history closed


def test_esc_clears_the_search_box_only_when_it_has_focus(qtbot: QtBot, window: MainWindow) -> None:
    search = window.sidebar.search_box
    search.setText("budget")
    window.input.setFocus()
    qtbot.keyClick(window.input, Qt.Key.Key_Escape)  # elsewhere Esc stops a reply; the search stays
    assert search.text() == "budget"
    window.sidebar.focus_search()
    qtbot.keyClick(search, Qt.Key.Key_Escape)
    assert search.text() == ""


def test_long_titles_are_elided_without_a_horizontal_scroll_bar(qtbot: QtBot) -> None:
    store = HistoryStore()
    store.create_conversation(title="A remarkably long conversation title " * 6)
    store.close()
    window = _window(qtbot)
    rows = window.sidebar.list
    qtbot.waitUntil(lambda: rows.count() >= 2, timeout=2000)
    row = rows.item(rows.count() - 1)
    print(f"row {rows.visualItemRect(row).width()} px in a list {rows.viewport().width()} px wide")
    assert rows.visualItemRect(row).width() <= rows.viewport().width()
    assert rows.horizontalScrollBar().maximum() == 0
    window.close()


class _Paints(QObject):
    """Counts repaints of the placeholder's line; the blinking cursor's own narrow repaints do not count."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        painted = isinstance(event, QPaintEvent) and isinstance(watched, QWidget)
        if painted and event.rect().width() > watched.width() // 2:  # type: ignore[attr-defined]
            self.count += 1
        return False


def test_the_placeholder_follows_the_mode_at_once(qtbot: QtBot) -> None:
    window = _window(qtbot, mode=Mode.CODE.value)
    assert window.input.placeholderText() == PLACEHOLDERS[Mode.CODE]  # opened in Code mode: says so
    paints = _Paints()
    window.input.viewport().installEventFilter(paints)
    qtbot.wait(50)
    paints.count = 0
    window.set_mode(Mode.CHAT)
    assert window.input.placeholderText() == PLACEHOLDERS[Mode.CHAT]
    qtbot.waitUntil(lambda: paints.count > 0, timeout=1000)  # repainted now, not after the next send
    print(f"{paints.count} repaint(s) of the message box after the mode changed")
    window.close()


def test_copying_shows_a_note_in_the_status_bar(qtbot: QtBot, window: MainWindow) -> None:
    message = window.chat_view.add_message("assistant", "Hello there\n\n```python\nprint('hi')\n```")
    message.copy_button.click()
    assert QApplication.clipboard().text() == message.text
    assert window.statusBar().currentMessage() == "Copied the message."
    message.body.anchorClicked.emit(QUrl("copy:0"))  # what clicking the code block's Copy link sends
    assert QApplication.clipboard().text() == "print('hi')"
    assert window.statusBar().currentMessage() == "Copied the code block."


def _export_action(window: MainWindow, conversation_id: int, label: str) -> QAction:
    menu = window.sidebar.context_menu(conversation_id)  # the menu a right click on the conversation opens
    return next(action for action in menu.actions() if action.text() == label)


def test_exporting_says_where_the_file_was_saved(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = window.store.create_conversation(title="Trip plans")
    window.store.add_message(conversation.id, "user", "Where should we go in May?")
    window.store.add_message(conversation.id, "assistant", "Lisbon is mild in May.")
    window.sidebar.refresh()
    chosen: list[Path] = []
    # A stand-in for the person picking a file in the save dialog: a native dialog cannot be driven offscreen.
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_args, **_kwargs: (str(chosen[-1]), ""))
    for label, name in (("Export as Markdown…", "trip.md"), ("Export as JSON…", "trip.json")):
        chosen.append(tmp_path / name)
        _export_action(window, conversation.id, label).trigger()
        assert chosen[-1].is_file() and "Lisbon is mild in May." in chosen[-1].read_text(encoding="utf-8")
        assert window.statusBar().currentMessage() == f"Saved to {chosen[-1]}"
    assert not window.banner.isVisible()

    # A folder that does not exist: nothing written, the error sentence in the banner, no "Saved to" note.
    window.statusBar().clearMessage()
    chosen.append(tmp_path / "missing" / "trip.md")
    _export_action(window, conversation.id, "Export as Markdown…").trigger()
    assert not chosen[-1].exists()
    assert window.banner.isVisible() and "could not be saved to" in window.banner.label.text()
    assert window.statusBar().currentMessage() == ""


def test_the_context_meter_shows_real_use_or_nothing(qtbot: QtBot) -> None:
    store = HistoryStore()
    saved = store.create_conversation(title="Saved")
    store.add_message(saved.id, "user", "Hello")
    stats = {"prompt_tokens": 700, "generated_tokens": 112, "context_size": 2048, "tokens_per_second": 9.0}
    store.add_message(saved.id, "assistant", "Hi there.", stats=stats)
    store.close()
    window = _window(qtbot)
    meter = window.conversation.context_meter
    assert meter.isHidden()  # no model, no reply: nothing, not "0 / 100"
    window.open_conversation(saved.id)
    qtbot.waitUntil(lambda: len(window.chat_view.messages) == 2, timeout=2000)
    print("after opening the saved chat:", meter.text())
    assert meter.isVisible() and meter.text() == "Context 812 / 2048"  # the stored reply's use
    window.new_conversation()
    assert meter.isHidden()
    window.close()


def test_the_model_has_one_name_in_the_window_as_in_the_cli(qtbot: QtBot, model_path: Path) -> None:
    from tests.helpers.window import open_window

    window = open_window(qtbot, model_path)
    info = window.bridge.model
    assert info is not None
    expected = model_path.stem
    assert info.display_name == expected  # what `llamadesk chat` prints: "Loaded {info.display_name} (...)"
    assert window.models.model_label.text().startswith(f"{expected} · ")
    assert window.chat_view.assistant_name == expected
    window.close()
