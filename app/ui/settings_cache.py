"""The Settings dialog's "Saved conversations" section: how much disk the conversations' saved llama.cpp states
may take (``state_cache_mb``), how much they take now, and a button that deletes them all. The states themselves
are kept by ``app.core.llm.state_cache``."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from app.core.limits import MAX_STATE_CACHE_MB
from app.core.llm.state_cache import StateCache
from app.core.settings import Settings
from app.core.units import human_bytes

MB_PER_GB = 1024


class StateCacheSection(QGroupBox):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__("Saved conversations", parent)
        form = QFormLayout(self)
        self.budget = QDoubleSpinBox()
        self.budget.setRange(0, MAX_STATE_CACHE_MB / MB_PER_GB)
        self.budget.setDecimals(1)
        self.budget.setSingleStep(0.5)
        self.budget.setSuffix(" GB")
        self.budget.setSpecialValueText("Keep none")
        self.budget.setValue(settings.state_cache_mb / MB_PER_GB)
        self.budget.setAccessibleName("Disk space for saved conversations")
        form.addRow("Disk space", self.budget)
        row = QHBoxLayout()
        self.used = QLabel()
        self.used.setAccessibleName("Disk space used by saved conversations")
        self.clear = QPushButton("Clear")
        self.clear.setAccessibleName("Delete the saved conversation states")
        self.clear.clicked.connect(self._clear)
        row.addWidget(self.used, 1)
        row.addWidget(self.clear)
        form.addRow("Used now", row)
        note = QLabel(
            "Reopening a long conversation, even after a restart, continues where it was instead of reading it "
            "all again. The oldest are deleted first when the space runs out; your conversations themselves "
            "are never touched."
        )
        note.setWordWrap(True)
        form.addRow(note)
        self._show_usage()

    def _show_usage(self) -> None:
        used = StateCache.default().disk_usage()
        self.used.setText(human_bytes(used) if used else "Nothing saved")
        self.clear.setEnabled(used > 0)

    def _clear(self) -> None:
        StateCache.default().clear()
        self._show_usage()

    def restore_defaults(self) -> None:
        self.budget.setValue(Settings().state_cache_mb / MB_PER_GB)

    def apply_to(self, settings: Settings) -> None:
        settings.state_cache_mb = round(self.budget.value() * MB_PER_GB)
