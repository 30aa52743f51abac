"""Settings' "Saved states" section: the disk budget edited, the space used shown, "Clear" deleting."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from app.core.llm.saved_state_store import SavedStateStore, SignatureSource, StateSignature
from app.core.settings import Settings
from app.ui.settings_dialog import SettingsDialog

pytestmark = pytest.mark.gui


def test_budget_usage_and_clear(qtbot: QtBot) -> None:
    cache = SavedStateStore.default()
    signature = SignatureSource(lambda: StateSignature("ab" * 32, 2048, 1, 1, -1, "test"))
    cache.put("conversation-1", range(10), bytearray(3_000_000), signature)
    assert cache.flush(30)
    dialog = SettingsDialog(Settings(saved_states_mb=2048))
    qtbot.addWidget(dialog)
    section = dialog.saved_states_section
    assert section.budget.value() == 2.0
    assert section.used.text() == "3.0 MB" and section.clear.isEnabled()
    section.clear.click()
    assert cache.disk_usage() == 0
    assert section.used.text() == "Nothing saved" and not section.clear.isEnabled()
    section.budget.setValue(0.5)
    assert dialog.result_settings().saved_states_mb == 512
    dialog._restore_defaults()
    assert dialog.result_settings().saved_states_mb == 4096
