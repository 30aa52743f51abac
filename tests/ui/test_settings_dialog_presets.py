"""The Settings dialog with the starter loaded shows the starter's own Chat preset (what the model really gets),
and a change made earlier for other models is not lost by opening and closing it."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from app.core.modes import PRESETS, STARTER_CHAT, Mode
from app.core.settings import Settings
from app.ui.settings_dialog import SettingsDialog

pytestmark = pytest.mark.gui


def test_the_starters_preset_is_shown_and_changes_are_stored_against_it(qtbot: QtBot) -> None:
    dialog = SettingsDialog(Settings(), model_id="smollm2-135m")
    qtbot.addWidget(dialog)
    chat = dialog.mode_editors[Mode.CHAT]
    assert chat.temperature.value() == pytest.approx(STARTER_CHAT.sampling.temperature)
    assert chat.system_prompt.toPlainText() == STARTER_CHAT.system_prompt
    assert dialog.result_settings().mode_overrides == {}  # nothing edited, nothing stored
    chat.temperature.setValue(0.5)
    assert dialog.result_settings().mode_overrides == {"chat": {"temperature": 0.5}}
    dialog._restore_defaults()
    assert chat.temperature.value() == pytest.approx(STARTER_CHAT.sampling.temperature)
    assert dialog.result_settings().mode_overrides == {}


def test_a_change_that_matches_the_starters_preset_is_kept_for_other_models(qtbot: QtBot) -> None:
    mine = {"chat": {"temperature": STARTER_CHAT.sampling.temperature}}  # made while another model was loaded
    assert STARTER_CHAT.sampling.temperature != PRESETS[Mode.CHAT].sampling.temperature
    dialog = SettingsDialog(Settings(mode_overrides=mine), model_id="smollm2-135m")
    qtbot.addWidget(dialog)
    assert dialog.result_settings().mode_overrides == mine
    other = SettingsDialog(Settings(mode_overrides=mine))
    qtbot.addWidget(other)
    assert other.mode_editors[Mode.CHAT].temperature.value() == pytest.approx(
        STARTER_CHAT.sampling.temperature
    )
