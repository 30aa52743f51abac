"""Push buttons whose text wraps, and a row that moves them to the next line when they do not fit beside each other.

A QPushButton draws its text on one line and cuts it at its edges when it is narrower than the text: fine for
"Get it", not for a question a person should read before clicking it. ``WrappingButton`` is a QPushButton (the
theme's look, focus, keyboard, ``clicked``) that breaks its text at spaces to fit its width and asks for the height
those lines need; ``FlowRow`` lays such buttons out left to right at their one-line width while they fit, starts a
new line when the next one does not, and gives a button wider than the whole row the row's width (its text wraps).
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtGui import QFontMetrics, QIcon, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import (
    QLayout,
    QLayoutItem,
    QPushButton,
    QSizePolicy,
    QStyle,
    QStyleOptionButton,
    QStylePainter,
    QWidget,
)

# A content width far above any label's, so that the style's frame and margins are measured without its minimum
# button width (Fusion makes any button with text at least 80 px wide).
_WIDE = 10_000


def wrap_words(text: str, metrics: QFontMetrics, width: int) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width``; a single word wider than that keeps a line
    of its own (the button's minimum width is its longest word, so in a layout that does not happen)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if not line or metrics.horizontalAdvance(candidate) <= width:
            line = candidate
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def button_padding(button: QPushButton) -> QSize:
    """What the style adds around a push button's text: its frame and margins, in each direction."""
    option = QStyleOptionButton()
    button.initStyleOption(option)
    content = QSize(_WIDE, _WIDE)
    full = button.style().sizeFromContents(QStyle.ContentsType.CT_PushButton, option, content, button)
    return full - content


class WrappingButton(QPushButton):
    """A push button whose text wraps onto as many lines as its width needs; centred, in the button's colours."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def text_width(self, width: int | None = None) -> int:
        """The width the text has in a button ``width`` wide (its present width by default)."""
        return (self.width() if width is None else width) - button_padding(self).width()

    def lines(self, width: int | None = None) -> list[str]:
        """The text's lines as drawn in a button ``width`` wide (its present width by default)."""
        return wrap_words(self.text(), self.fontMetrics(), self.text_width(width))

    def _size_for(self, text_width: int, line_count: int) -> QSize:
        padding = button_padding(self)
        return QSize(
            text_width + padding.width(), line_count * self.fontMetrics().lineSpacing() + padding.height()
        )

    def sizeHint(self) -> QSize:
        """The text on one line, as a QPushButton would be (never narrower than the style's least button)."""
        one_line = self._size_for(self.fontMetrics().horizontalAdvance(self.text()), 1)
        return one_line.expandedTo(super().sizeHint())

    def minimumSizeHint(self) -> QSize:
        """As narrow as its longest word: any narrower would cut that word."""
        metrics = self.fontMetrics()
        longest = max((metrics.horizontalAdvance(word) for word in self.text().split()), default=0)
        return self._size_for(longest, 1)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return max(self._size_for(0, max(len(self.lines(width)), 1)).height(), super().sizeHint().height())

    def paintEvent(self, _event: QPaintEvent) -> None:
        # The style draws the button as it draws any other (bevel, hover, pressed, focus) with no text; the
        # lines are drawn on it in the place and colour the style gives a button's label.
        option = QStyleOptionButton()
        self.initStyleOption(option)
        option.text = ""
        option.icon = QIcon()
        painter = QStylePainter(self)
        painter.drawControl(QStyle.ControlElement.CE_PushButton, option)
        contents = self.style().subElementRect(QStyle.SubElement.SE_PushButtonContents, option, self)
        if self.isDown() or self.isChecked():
            shift = QPoint(
                self.style().pixelMetric(QStyle.PixelMetric.PM_ButtonShiftHorizontal, option, self),
                self.style().pixelMetric(QStyle.PixelMetric.PM_ButtonShiftVertical, option, self),
            )
            contents.translate(shift)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        self.style().drawItemText(
            painter,
            contents,
            int(Qt.AlignmentFlag.AlignCenter),
            self.palette(),
            self.isEnabled(),
            "\n".join(self.lines()),
            QPalette.ColorRole.ButtonText,
        )


class _ItemListLayout(QLayout):
    """A layout keeping its items in a list, its height following its width; subclasses place them."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 6) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self.setSpacing(spacing)
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def hasHeightForWidth(self) -> bool:
        return True


class FlowRow(_ItemListLayout):
    """Widgets left to right at their preferred width while they fit, then on the next line; one wider than the
    row gets the row's width and the height it asks for at that width (a ``WrappingButton`` wraps its text)."""

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation(0)

    def heightForWidth(self, width: int) -> int:
        return self._place(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._place(rect, move=True)

    def sizeHint(self) -> QSize:
        """All on one line."""
        visible = self._visible()
        width = sum(item.sizeHint().width() for item in visible) + self.spacing() * max(len(visible) - 1, 0)
        height = max((item.sizeHint().height() for item in visible), default=0)
        return QSize(width, height).grownBy(self.contentsMargins())

    def minimumSize(self) -> QSize:
        """As narrow as the widest item's minimum. The height is for the layout above to take from
        ``heightForWidth`` at the width it has; here the least height of a line, so that a wide card is not kept
        as tall as a narrow one."""
        visible = self._visible()
        width = max((item.minimumSize().width() for item in visible), default=0)
        height = max((item.minimumSize().height() for item in visible), default=0)
        return QSize(width, height).grownBy(self.contentsMargins())

    def _visible(self) -> list[QLayoutItem]:
        return [item for item in self._items if not item.isEmpty()]

    def _place(self, rect: QRect, move: bool) -> int:
        """Lay the items out in ``rect`` (only measure unless ``move``); returns the height they take."""
        area = rect.marginsRemoved(self.contentsMargins())
        spacing = self.spacing()
        x, y, line_height = area.x(), area.y(), 0
        for item in self._visible():
            width = min(item.sizeHint().width(), area.width())
            width = max(width, item.minimumSize().width())
            if x > area.x() and x + width > area.x() + area.width():
                x, y, line_height = area.x(), y + line_height + spacing, 0
            height = item.heightForWidth(width) if item.hasHeightForWidth() else item.sizeHint().height()
            if move:
                item.setGeometry(QRect(x, y, width, height))
            x += width + spacing
            line_height = max(line_height, height)
        margins = self.contentsMargins()
        return y + line_height - area.y() + margins.top() + margins.bottom()


class BesideOrBelow(_ItemListLayout):
    """A text and its button: the button at the text's right while the text keeps ``least_text_width`` beside it,
    else under the text at the left (as narrow as the row, where a ``WrappingButton`` wraps its words).

    ``BesideOrBelow(text_widget, button)``; the text takes what the button leaves and the height it asks for.
    """

    def __init__(self, text: QWidget, button: QWidget, least_text_width: int = 200, spacing: int = 6) -> None:
        super().__init__(spacing=spacing)
        self._least_text_width = least_text_width
        self.addWidget(text)
        self.addWidget(button)

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation.Horizontal

    def heightForWidth(self, width: int) -> int:
        return self._place(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._place(rect, move=True)

    def sizeHint(self) -> QSize:
        text, button = self._parts()
        width = text.sizeHint().width() + self.spacing() + button.sizeHint().width()
        return QSize(width, max(text.sizeHint().height(), button.sizeHint().height()))

    def minimumSize(self) -> QSize:
        """As narrow as the wider of the two's minimum; the height, as ``FlowRow``'s, is the least of a line."""
        text, button = self._parts()
        width = max(text.minimumSize().width(), button.minimumSize().width())
        return QSize(width, max(text.minimumSize().height(), button.minimumSize().height()))

    def _parts(self) -> tuple[QLayoutItem, QLayoutItem]:
        return self._items[0], self._items[1]

    @staticmethod
    def _height(item: QLayoutItem, width: int) -> int:
        return item.heightForWidth(width) if item.hasHeightForWidth() else item.sizeHint().height()

    def _place(self, rect: QRect, move: bool) -> int:
        """Lay the two out in ``rect`` (only measure unless ``move``); returns the height they take."""
        text, button = self._parts()
        if button.isEmpty():
            if move:
                text.setGeometry(QRect(rect.x(), rect.y(), rect.width(), self._height(text, rect.width())))
            return 0 if text.isEmpty() else self._height(text, rect.width())
        button_width = max(button.sizeHint().width(), button.minimumSize().width())
        beside_width = rect.width() - self.spacing() - button_width
        if beside_width >= self._least_text_width or text.isEmpty():
            text_height = 0 if text.isEmpty() else self._height(text, beside_width)
            button_height = self._height(button, button_width)
            if move:
                text.setGeometry(QRect(rect.x(), rect.y(), beside_width, text_height))
                button.setGeometry(
                    QRect(rect.right() + 1 - button_width, rect.y(), button_width, button_height)
                )
            return max(text_height, button_height)
        text_height = self._height(text, rect.width())
        button_width = max(min(button_width, rect.width()), button.minimumSize().width())
        button_height = self._height(button, button_width)
        if move:
            text.setGeometry(QRect(rect.x(), rect.y(), rect.width(), text_height))
            button.setGeometry(
                QRect(rect.x(), rect.y() + text_height + self.spacing(), button_width, button_height)
            )
        return text_height + self.spacing() + button_height
