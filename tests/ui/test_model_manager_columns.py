"""The model menu's speed figures say they assume an idle computer: in the legend under the table and on every
tokens/s cell (real catalog, this machine's hardware)."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from app.core.models.hardware import probe_hardware
from app.core.models.menu import SPEEDS_ASSUME_IDLE, build_menu
from app.ui.model_manager_columns import COLUMN_SPEED, LEGEND, option_cells

pytestmark = pytest.mark.gui


def test_the_speed_figures_say_they_assume_an_idle_computer(qtbot: QtBot) -> None:
    assert "idle" in SPEEDS_ASSUME_IDLE and "other programs" in SPEEDS_ASSUME_IDLE
    legend = QLabel(LEGEND)
    assert SPEEDS_ASSUME_IDLE in legend.text()
    rows = build_menu(probe_hardware(), 2048)
    options = [option for row in rows for option in row.options]
    assert options
    for option in options:
        assert option_cells(option, 2048)[COLUMN_SPEED].toolTip().endswith(SPEEDS_ASSUME_IDLE)
