"""The "< 2/3 >" on a message that has other versions (an edited question, a reply written again): it moves
between them, and the rest of the transcript follows the version chosen."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

from app.core.history.records import BranchPosition


class BranchSwitcher(QWidget):
    """Hidden for a message without other versions; shown but locked while a reply streams (a version chosen
    then would pull the transcript from under the reply being written).

    Signals:
        switch_requested(int): the id of the version to show instead.
    """

    switch_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.position: BranchPosition | None = None
        self.locked = False
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        self.previous_button = self._arrow("<", "Show the previous version", -1)
        self.label = QLabel()
        self.label.setObjectName("branchPosition")
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.next_button = self._arrow(">", "Show the next version", +1)
        row.addWidget(self.previous_button)
        row.addWidget(self.label)
        row.addWidget(self.next_button)
        self.hide()

    def _arrow(self, text: str, tooltip: str, step: int) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setAutoRaise(True)
        button.setToolTip(tooltip)
        button.setAccessibleName(tooltip)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        button.clicked.connect(lambda: self._step(step))
        return button

    def set_position(self, position: BranchPosition | None) -> None:
        self.position = position
        if position is None or position.count < 2:
            self.hide()
            return
        self.label.setText(f"{position.index + 1}/{position.count}")
        self.label.setAccessibleName(f"Version {position.index + 1} of {position.count}")
        self._enable_arrows()
        self.show()

    def set_locked(self, locked: bool) -> None:
        """Lock the arrows while a reply streams; the position stays in view."""
        self.locked = locked
        self.setToolTip("Other versions can be shown when the reply is done (or stopped)." if locked else "")
        self._enable_arrows()

    def _enable_arrows(self) -> None:
        position = self.position
        if position is None:
            return
        self.previous_button.setEnabled(not self.locked and position.index > 0)
        self.next_button.setEnabled(not self.locked and position.index < position.count - 1)

    def _step(self, step: int) -> None:
        position = self.position
        if position is None or self.locked:
            return
        index = position.index + step
        if 0 <= index < position.count:
            self.switch_requested.emit(position.sibling_ids[index])
