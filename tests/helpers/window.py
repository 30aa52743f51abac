"""The real main window for UI tests: offscreen, with its own engine service and the real model loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.history.store import HistoryStore
from app.core.modes import Mode
from app.core.settings import Settings
from app.ui.main_window import MainWindow


def open_window(
    qtbot: QtBot, model_path: Path, *, sampling: dict[str, Any] | None = None, **settings_changes: Any
) -> MainWindow:
    """A shown window with ``model_path`` loaded; greedy sampling in every mode (plus ``sampling``), so the small
    model's answers are repeatable."""
    overrides = {mode.value: {"temperature": 0.0, **(sampling or {})} for mode in Mode}
    settings = Settings(
        context_size=2048, last_model=str(model_path), mode_overrides=overrides, **settings_changes
    )
    window = MainWindow(settings=settings, store=HistoryStore())
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.bridge.model is not None, timeout=30_000)
    return window


def press_escape(qtbot: QtBot, window: MainWindow) -> None:
    """Esc pressed on the window as a person presses it: on the active window, where Qt's window shortcuts
    listen (a window left inactive by an earlier test's dialog would ignore it)."""
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    qtbot.keyClick(window, Qt.Key.Key_Escape)
