"""A wheel passing over a spin box, combo box or slider scrolls the page; only a focused one takes it (issue 22).

The wheel is turned through the window system (QTest.wheelEvent), so Qt delivers it as it delivers a mouse's:
to the widget under the pointer first, then up its parents until one takes it.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.core.modes import Mode
from app.core.settings import Settings
from app.ui.application import make_application
from app.ui.settings_dialog import SettingsDialog
from app.ui.wheel_guard import WheelGuard, install_wheel_guard

pytestmark = pytest.mark.gui

NOTCH_DOWN = QPoint(0, -120)  # one notch of a mouse wheel, turned towards the person


@pytest.fixture(autouse=True)
def guarded_application(qapp: QApplication) -> QApplication:
    """The application as the window starts it (make_application), guard included."""
    app = make_application()
    assert app is qapp
    return qapp


def turn_wheel(widget: QWidget, notch: QPoint = NOTCH_DOWN) -> None:
    """One wheel notch with the pointer over the middle of ``widget``, as the window system delivers it."""
    window = widget.window()
    handle = window.windowHandle()
    assert handle is not None, "the widget's window must be shown"
    QTest.wheelEvent(handle, widget.mapTo(window, widget.rect().center()), notch)
    QApplication.processEvents()


def click_into(qtbot: QtBot, widget: QWidget) -> None:
    """Focus a spin box as a person does: a click in its text (not on its arrows, which would step it)."""
    text = widget.findChild(QLineEdit)
    assert text is not None
    QTest.mouseClick(text, Qt.MouseButton.LeftButton, pos=QPoint(4, text.height() // 2))
    qtbot.waitUntil(widget.hasFocus, timeout=5_000)


def shown_settings_dialog(qtbot: QtBot, page: str = "Modes") -> tuple[SettingsDialog, QScrollArea]:
    """The real Settings dialog on ``page``, active and short enough that the page scrolls (its pages fit the
    default size: a small screen or a window made smaller is where they scroll)."""
    dialog = SettingsDialog(Settings())
    qtbot.addWidget(dialog)
    dialog.show_page(page)
    dialog.setMinimumHeight(0)
    dialog.show()
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow, timeout=5_000)
    scroll = dialog.page(page)
    needed = scroll.widget().minimumSizeHint().height()
    dialog.resize(dialog.width(), dialog.height() - scroll.viewport().height() + needed // 2)
    QApplication.processEvents()
    bar = scroll.verticalScrollBar()
    assert bar.maximum() > 0, "the page should be taller than the dialog made short"
    return dialog, scroll


def scrolled_to_middle(scroll: QScrollArea, widget: QWidget) -> int:
    """Bring ``widget`` into view with room to scroll either way; the scroll bar's value then."""
    scroll.ensureWidgetVisible(widget, 0, scroll.viewport().height() // 3)
    QApplication.processEvents()
    bar = scroll.verticalScrollBar()
    assert 0 < bar.value() < bar.maximum(), "the test needs room to scroll down from here"
    return bar.value()


def test_the_wheel_over_an_unfocused_top_p_scrolls_the_dialog_and_leaves_the_value(qtbot: QtBot) -> None:
    dialog, scroll = shown_settings_dialog(qtbot)
    top_p = dialog.mode_editors[Mode.CHAT].top_p
    top_p.setValue(0.95)
    before = scrolled_to_middle(scroll, top_p)

    turn_wheel(top_p)

    assert top_p.value() == pytest.approx(0.95)
    assert not top_p.hasFocus(), "a wheel must not focus the spin box either"
    assert scroll.verticalScrollBar().value() > before, "the dialog scrolls as it does over a label"
    assert dialog.result_settings().mode_overrides == {}  # OK would save nothing changed


def test_a_focused_top_p_takes_the_wheel_and_the_dialog_stays_put(qtbot: QtBot) -> None:
    dialog, scroll = shown_settings_dialog(qtbot)
    top_p = dialog.mode_editors[Mode.CHAT].top_p
    top_p.setValue(0.95)
    scrolled_to_middle(scroll, top_p)
    click_into(qtbot, top_p)
    before = scroll.verticalScrollBar().value()

    turn_wheel(top_p)

    assert top_p.value() == pytest.approx(0.90)
    assert scroll.verticalScrollBar().value() == before


def test_the_wheel_over_a_combo_box_scrolls_until_tab_focuses_it(qtbot: QtBot) -> None:
    dialog, scroll = shown_settings_dialog(qtbot, "Engine")
    combo = dialog.context_size
    chosen = combo.currentIndex()
    assert 0 < chosen < combo.count() - 1
    scroll.verticalScrollBar().setValue(0)  # Performance is the first section; the page can scroll down
    QApplication.processEvents()

    turn_wheel(combo)

    assert combo.currentIndex() == chosen
    assert not combo.hasFocus()
    scrolled = scroll.verticalScrollBar().value()
    assert scrolled > 0
    # A person tabs from the CPU threads box into the combo box; the wheel then steps its choice.
    scroll.verticalScrollBar().setValue(0)
    QApplication.processEvents()
    click_into(qtbot, dialog.threads)
    QTest.keyClick(dialog.threads, Qt.Key.Key_Tab)
    qtbot.waitUntil(combo.hasFocus, timeout=5_000)

    turn_wheel(combo)

    assert combo.currentIndex() == chosen + 1
    assert scroll.verticalScrollBar().value() == 0


def test_a_slider_in_a_scroll_area_and_the_scroll_bar_itself(qtbot: QtBot) -> None:
    """The app has no slider yet; any slider gets the same rule, while the wheel over a scroll bar (a slider
    too) still scrolls."""
    page = QWidget()
    layout = QVBoxLayout(page)
    layout.addWidget(QLineEdit())  # first in the tab order, so the window's first focus lands here
    for number in range(30):
        layout.addWidget(QLabel(f"Line {number}"))
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(0, 100)
    slider.setValue(50)
    layout.addWidget(slider)
    for number in range(30, 60):
        layout.addWidget(QLabel(f"Line {number}"))
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(page)
    scroll.resize(300, 300)
    qtbot.addWidget(scroll)
    scroll.show()
    scroll.activateWindow()
    qtbot.waitUntil(scroll.isActiveWindow, timeout=5_000)
    bar = scroll.verticalScrollBar()
    before = scrolled_to_middle(scroll, slider)
    assert not slider.hasFocus()

    turn_wheel(slider)

    assert slider.value() == 50
    assert bar.value() > before
    scrolled = bar.value()

    turn_wheel(bar)  # the scroll bar is never guarded

    assert bar.value() > scrolled
    scroll.ensureWidgetVisible(slider)
    QApplication.processEvents()
    QTest.mouseClick(slider, Qt.MouseButton.LeftButton, pos=slider.rect().center())
    qtbot.waitUntil(slider.hasFocus, timeout=5_000)
    clicked = slider.value()
    before = bar.value()

    turn_wheel(slider)

    assert slider.value() != clicked
    assert bar.value() == before


def test_guarded_widgets_are_focused_by_click_and_tab_only(qtbot: QtBot) -> None:
    dialog = SettingsDialog(Settings())
    qtbot.addWidget(dialog)
    dialog.show()
    top_p = dialog.mode_editors[Mode.CHAT].top_p
    assert top_p.focusPolicy() == Qt.FocusPolicy.StrongFocus
    assert dialog.theme.focusPolicy() == Qt.FocusPolicy.StrongFocus


def test_the_guard_is_installed_once(qapp: QApplication) -> None:
    first = install_wheel_guard(qapp)
    assert install_wheel_guard(qapp) is first
    assert make_application() is qapp
    assert qapp.findChildren(WheelGuard) == [first]
