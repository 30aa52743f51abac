"""Light and dark: follow the system unless the user chose one."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from app.ui.transcript.markdown_render import DARK, LIGHT, Palette

_STYLE = """
QFrame#userMessage { background: %(user)s; border: none; border-radius: 8px; }
QFrame#assistantMessage { background: %(assistant)s; border: none; border-radius: 8px; }
QLabel#messageStats, QLabel#messageNote { color: %(muted)s; font-size: 11px; }
QFrame#banner { background: %(banner)s; border-radius: 6px; }
QFrame#banner QLabel { color: %(banner_text)s; }
QWidget#transcript { background: %(base)s; }
"""


def system_prefers_dark() -> bool:
    hints = QGuiApplication.styleHints()
    return bool(hints.colorScheme() == Qt.ColorScheme.Dark)


def apply_theme(app: QApplication, choice: str) -> Palette:
    """Apply ``choice`` ("system", "light" or "dark") and return the palette for rendered messages."""
    dark = system_prefers_dark() if choice == "system" else choice == "dark"
    app.setStyle("Fusion")
    palette = QPalette()
    if dark:
        colors = {
            QPalette.ColorRole.Window: "#1e2227",
            QPalette.ColorRole.WindowText: "#e6edf3",
            QPalette.ColorRole.Base: "#0d1117",
            QPalette.ColorRole.AlternateBase: "#161b22",
            QPalette.ColorRole.Text: "#e6edf3",
            QPalette.ColorRole.Button: "#2d333b",
            QPalette.ColorRole.ButtonText: "#e6edf3",
            QPalette.ColorRole.Highlight: "#1f6feb",
            QPalette.ColorRole.HighlightedText: "#ffffff",
            QPalette.ColorRole.ToolTipBase: "#2d333b",
            QPalette.ColorRole.ToolTipText: "#e6edf3",
            QPalette.ColorRole.PlaceholderText: "#8b949e",
            QPalette.ColorRole.Link: "#4493f8",
        }
        for role, color in colors.items():
            palette.setColor(role, QColor(color))
        style = {"user": "#1c2d41", "assistant": "#161b22", "muted": "#8b949e", "banner": "#5a1e1e",
                 "banner_text": "#ffdcd7", "base": "#0d1117"}  # fmt: skip
    else:
        palette = app.style().standardPalette()
        style = {"user": "#e7f0fd", "assistant": "#f6f8fa", "muted": "#57606a", "banner": "#ffebe9",
                 "banner_text": "#82071e", "base": "#ffffff"}  # fmt: skip
    app.setPalette(palette)
    app.setStyleSheet(_STYLE % style)
    return DARK if dark else LIGHT
