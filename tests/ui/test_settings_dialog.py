from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.core import settings as settings_store
from app.core.modes import PRESETS, Mode
from app.core.settings import Settings
from app.ui.settings_dialog import SettingsDialog
from app.ui.theme import apply_theme
from app.ui.transcript.markdown_render import DARK, LIGHT

pytestmark = pytest.mark.gui


def test_edits_become_settings_and_only_changes_are_stored(qtbot: QtBot) -> None:
    original = Settings(threads=0, context_size=4096, imported_models=["/models/a.gguf"])
    dialog = SettingsDialog(original)
    qtbot.addWidget(dialog)
    dialog.threads.setValue(3)
    dialog.context_size.setCurrentIndex(dialog.context_size.findData(8192))
    code = dialog.mode_editors[Mode.CODE]
    code.temperature.setValue(0.5)
    code.system_prompt.setPlainText("Answer in Rust.")
    dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
    result = dialog.result_settings()
    assert result.threads == 3
    assert result.context_size == 8192
    assert result.theme == "dark"
    assert result.mode_overrides == {"code": {"temperature": 0.5, "system_prompt": "Answer in Rust."}}
    assert result.imported_models == ["/models/a.gguf"]  # not shown in the dialog, carried over
    assert original.threads == 0  # the dialog edits a copy
    settings_store.save(result)
    assert settings_store.load().settings == result


def test_restore_defaults(qtbot: QtBot) -> None:
    dialog = SettingsDialog(Settings(threads=5, mode_overrides={"chat": {"temperature": 1.5}}))
    qtbot.addWidget(dialog)
    dialog._restore_defaults()
    result = dialog.result_settings()
    assert result.threads == 0
    assert result.mode_overrides == {}
    assert dialog.mode_editors[Mode.CHAT].temperature.value() == PRESETS[Mode.CHAT].sampling.temperature


def test_theme_override(qtbot: QtBot) -> None:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    assert apply_theme(app, "dark") is DARK
    dark_window = app.palette().window().color().lightness()
    assert apply_theme(app, "light") is LIGHT
    assert app.palette().window().color().lightness() > dark_window


def test_the_dialog_fits_the_screen_and_its_buttons_stay_in_reach(qtbot: QtBot) -> None:
    """Its pages fit a laptop screen; on the tallest (Engine), OK and Cancel stay on screen."""
    from PySide6.QtWidgets import QDialogButtonBox

    dialog = SettingsDialog(Settings())
    qtbot.addWidget(dialog)
    dialog.show_page("Engine")
    dialog.show()
    screen = dialog.screen().availableGeometry()
    page = dialog.page("Engine")
    print(
        f"screen {screen.height()} px, page {page.widget().sizeHint().height()} px, dialog {dialog.height()} px"
    )
    assert dialog.height() <= screen.height()
    ok = dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
    bottom = ok.mapTo(dialog, ok.rect().bottomRight())
    assert ok.isVisible() and dialog.rect().contains(bottom)
