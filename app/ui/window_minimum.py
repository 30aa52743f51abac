"""The main window's minimum size: its own floor, raised while a docked panel needs room beside the centre.

A ``QMainWindow`` given an explicit minimum keeps it even when its docks and central widget need more; Qt then
gives the central widget less than its minimum and a ``QSplitter`` in it lays its parts over each other (the
conversation list over the chat, the Send button under the Library dock). So the minimum is worked out again
whenever the window's layout changes: the central widget's minimum beside each docked panel's, from the widgets'
own minimum size hints. A floating panel is a window of its own and takes nothing. When the minimum grows past
the window's size Qt widens the window; it is then moved back inside the screen's available area (on a screen
narrower than the minimum its left edge stays on screen: parts past the edge beat parts over each other), and
it goes back to its former size when the panel closes or floats, unless the person resized it meanwhile.

Only the centre and the docks count for the width: the status bar's labels (a long model name, the serving
address) are squeezed as before rather than widening the window whenever one of them changes.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow, QStyle, QWidget, QWidgetItem

SIDE_AREAS = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea)


def least_size(widget: QWidget) -> QSize:
    """The least size a layout gives ``widget``: its explicit minimum where set, else its minimum size hint."""
    return QWidgetItem(widget).minimumSize()


def docked_panels(window: QMainWindow) -> list[QDockWidget]:
    """The window's docks shown in its dock areas (not floating, not closed)."""
    return [
        dock
        for dock in window.findChildren(QDockWidget)
        if dock.parentWidget() is window and not dock.isFloating() and dock.isVisibleTo(window)
    ]


def width_needed(window: QMainWindow) -> int:
    """The central widget's least width plus, for each side dock area in use, its widest docked panel and the
    separator beside it."""
    central = window.centralWidget()
    width = least_size(central).width() if central is not None else 0
    separator = window.style().pixelMetric(QStyle.PixelMetric.PM_DockWidgetSeparatorExtent, None, window)
    docks = docked_panels(window)
    for area in SIDE_AREAS:
        widths = [least_size(dock).width() for dock in docks if window.dockWidgetArea(dock) == area]
        if widths:
            width += max(widths) + separator
    margins = window.contentsMargins()
    return width + margins.left() + margins.right()


class WindowMinimum(QObject):
    """Holds ``window``'s minimum size at ``floor`` or more: as wide as its centre and docked panels need side by
    side, as tall as its layout needs (toolbar, centre, a panel docked at the top or bottom, status bar)."""

    def __init__(self, window: QMainWindow, floor: QSize) -> None:
        super().__init__(window)
        self.main_window = window
        self.floor = floor
        window.setMinimumSize(floor)
        self._grown: tuple[QSize, QSize] | None = None  # the window's size before and after it last grew
        # Showing, hiding, floating or moving a dock, and a widget whose minimum changes, all post a layout
        # request to the window: the one place to see every change of the room needed.
        window.installEventFilter(self)

    def needed(self) -> QSize:
        return self.floor.expandedTo(
            QSize(width_needed(self.main_window), self.main_window.minimumSizeHint().height())
        )

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.main_window and event.type() == QEvent.Type.LayoutRequest:
            self.apply()
        return False  # the window lays itself out as usual, within the minimum set here

    def apply(self) -> None:
        window = self.main_window
        needed = self.needed()
        if needed == window.minimumSize():
            return
        before = window.size()
        window.setMinimumSize(needed)  # Qt enlarges a window smaller than its new minimum
        if before.expandedTo(needed) != before:
            original = self._grown[0] if self._grown is not None and before == self._grown[1] else before
            self._grown = (original, window.size())
            self.keep_on_screen()
        elif self._grown is not None and before == self._grown[1]:
            # The panel the window grew for is closed (or floats), and the person has not resized the window
            # since: it goes back to the size they had chosen.
            window.resize(self._grown[0].expandedTo(needed))
            self._grown = None

    def keep_on_screen(self) -> None:
        """A window widened at the screen's right edge (or heightened at its bottom) moves back inside the
        screen's available area, as far as it fits there."""
        window = self.main_window
        if not window.isVisible() or window.isMaximized() or window.isFullScreen():
            return
        available = window.screen().availableGeometry()
        frame = window.frameGeometry()
        x = max(available.left(), min(frame.left(), available.right() + 1 - frame.width()))
        y = max(available.top(), min(frame.top(), available.bottom() + 1 - frame.height()))
        if (x, y) != (frame.left(), frame.top()):
            window.move(x, y)
