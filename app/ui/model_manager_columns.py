"""The model manager's catalog table: its columns, and the cells that show one option of a model.

Fit (memory only) and speed have their own columns and their own words, so a model that fits but is slow
reads "runs well" and "slow", never "tight".
"""

from __future__ import annotations

from PySide6.QtGui import QColor
from PySide6.QtWidgets import QTableWidgetItem

from app.core.models.fit import FitLabel
from app.core.models.menu import SPEEDS_ASSUME_IDLE, MenuOption
from app.core.models.speed import FAST_TOKENS_PER_SECOND, USABLE_TOKENS_PER_SECOND, SpeedLabel
from app.core.units import human_bytes

(
    COLUMN_MODEL,
    COLUMN_FIT,
    COLUMN_QUANT,
    COLUMN_SIZE,
    COLUMN_SPEED_LABEL,
    COLUMN_SPEED,
    COLUMN_ACTION,
) = range(7)
HEADERS = ["Model", "Fit", "Quantization", "Size", "Speed", "Tokens/s", ""]

FIT_COLORS = {
    FitLabel.RUNS_WELL: "#2e7d32",
    FitLabel.TIGHT: "#ef6c00",
    FitLabel.TOO_LARGE: "#c62828",
    FitLabel.UNKNOWN: "#757575",
}
SPEED_COLORS = {
    SpeedLabel.FAST: "#2e7d32",
    SpeedLabel.USABLE: "#1565c0",
    SpeedLabel.SLOW: "#ef6c00",
    SpeedLabel.UNKNOWN: "#757575",
}
LEGEND = (
    f"Fit is memory only: the weights and the KV cache of the planned context against the memory available. "
    f"Speed is tokens/s on this computer: fast from {FAST_TOKENS_PER_SECOND:.0f}, usable from "
    f"{USABLE_TOKENS_PER_SECOND:.0f}, slow below; predicted from the memory bandwidth and corrected by models "
    "that ran here. Recommended models (runs well and at least usable) come first. ~ marks sizes estimated from "
    f"bits per weight (the Hub's file list was not fetched). {SPEEDS_ASSUME_IDLE}"
)


def option_cells(option: MenuOption, context_size: int) -> dict[int, QTableWidgetItem]:
    """The fit, speed, size and tokens/s cells for one option, with their tooltips."""
    fit = QTableWidgetItem(option.label.value)
    fit.setForeground(QColor(FIT_COLORS[option.label]))
    fit.setToolTip(option.reason)
    won_t_run = option.fit.label is FitLabel.TOO_LARGE
    words = QTableWidgetItem("" if won_t_run else option.speed_label.value)
    words.setForeground(QColor(SPEED_COLORS[option.speed_label]))
    words.setToolTip(f"{option.speed_text} predicted ({option.speed.basis.value})")
    size = QTableWidgetItem(option.size_text)
    size.setToolTip(
        f"{option.files.display_name}; needs about {human_bytes(option.fit.needed)} of memory at "
        f"{context_size} tokens of context"
    )
    speed = QTableWidgetItem(option.speed_text)
    speed.setToolTip(f"Generation speed, {option.speed.basis.value}. {SPEEDS_ASSUME_IDLE}")
    return {COLUMN_FIT: fit, COLUMN_SPEED_LABEL: words, COLUMN_SIZE: size, COLUMN_SPEED: speed}
