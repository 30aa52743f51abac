"""A mouse wheel passing over a spin box, combo box or slider scrolls the page, not the value.

Scrolling the Settings dialog once turned Top-p from 0.95 to 0.05 because the wheel crossed its spin box on the
way down, and OK would have saved it. So, app-wide, these widgets take the wheel only once the person has
focused them (a click or Tab); until then the wheel goes on to their parents, so the scroll area around them
scrolls as it does over a label. They also stop taking focus from the wheel itself, which would otherwise focus
them on the first notch and change them on the next.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QScrollBar,
    QWidget,
)

GUARDED_WIDGETS = (QAbstractSpinBox, QComboBox, QAbstractSlider)


def is_guarded(widget: QObject) -> bool:
    """A widget whose value a stray wheel would change. Scroll bars are sliders too, but scrolling is what the
    wheel over them is for (and they never take focus)."""
    return isinstance(widget, GUARDED_WIDGETS) and not isinstance(widget, QScrollBar)


def stop_wheel_focus(widget: QWidget) -> None:
    """A wheel never focuses the widget; a click and Tab still do (Qt's spin and combo boxes default to
    WheelFocus)."""
    if widget.focusPolicy() == Qt.FocusPolicy.WheelFocus:
        widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)


class WheelGuard(QObject):
    """The application's event filter that keeps a wheel from changing a widget the person has not focused."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.Wheel:
            if is_guarded(watched) and isinstance(watched, QWidget) and not watched.hasFocus():
                # Handled here but not accepted: Qt then offers the same wheel to the parent, and so on up to
                # the scroll area, exactly as over a widget that has no use for the wheel.
                event.ignore()
                return True
        elif kind == QEvent.Type.Polish and is_guarded(watched) and isinstance(watched, QWidget):
            # Every widget is polished once before it is first shown: the one place that sees them all.
            stop_wheel_focus(watched)
        return False


def install_wheel_guard(app: QApplication) -> WheelGuard:
    """Guard every spin box, combo box and slider of ``app``, present and future; installing twice is harmless."""
    existing = app.findChild(WheelGuard)
    if isinstance(existing, WheelGuard):
        return existing
    guard = WheelGuard(app)  # the application owns it, so it lives as long as the filter is installed
    app.installEventFilter(guard)
    for widget in app.allWidgets():  # those created before the guard, already polished
        if is_guarded(widget):
            stop_wheel_focus(widget)
    return guard
