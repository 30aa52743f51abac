"""The Settings dialog's "Saved states" section: how much disk the conversations' saved llama.cpp states
may take (``saved_states_mb``), how much they take now, and a button that deletes them all. The states themselves
are kept by ``app.core.llm.saved_state_store``."""

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

from app.core.limits import MAX_SAVED_STATES_MB
from app.core.llm.saved_state_store import SavedStateStore
from app.core.settings import Settings
from app.core.units import human_bytes

MB_PER_GB = 1024


class SavedStatesSection(QGroupBox):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__("Saved states", parent)
        form = QFormLayout(self)
        self.budget = QDoubleSpinBox()
        self.budget.setRange(0, MAX_SAVED_STATES_MB / MB_PER_GB)
        self.budget.setDecimals(1)
        self.budget.setSingleStep(0.5)
        self.budget.setSuffix(" GB")
        self.budget.setSpecialValueText("Keep none")
        self.budget.setValue(settings.saved_states_mb / MB_PER_GB)
        self.budget.setAccessibleName("Disk space for saved conversations")
        form.addRow("Disk space", self.budget)
        row = QHBoxLayout()
        self.used = QLabel()
        self.used.setAccessibleName("Disk space used by saved conversations")
        self.clear = QPushButton("Clear")
        self.clear.setAccessibleName("Delete the saved states")
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
        used = SavedStateStore.default().disk_usage()
        self.used.setText(human_bytes(used) if used else "Nothing saved")
        self.clear.setEnabled(used > 0)

    def _clear(self) -> None:
        SavedStateStore.default().clear()
        self._show_usage()

    def restore_defaults(self) -> None:
        self.budget.setValue(Settings().saved_states_mb / MB_PER_GB)

    def apply_to(self, settings: Settings) -> None:
        settings.saved_states_mb = round(self.budget.value() * MB_PER_GB)
