"""The window saves a conversation's llama.cpp state under its key, and deleting the conversation for good (the
trash emptied as the window closes) deletes its state too. Real window, real model."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.llm.saved_state_store import SUFFIX, SavedStateStore
from app.core.paths import app_paths
from tests.helpers.window import open_window

pytestmark = pytest.mark.gui


def saved_states() -> list[Path]:
    folder = app_paths().saved_states_dir
    return [p for p in folder.iterdir() if p.name.endswith(SUFFIX)] if folder.exists() else []


def test_a_reply_saves_the_state_and_deleting_the_conversation_deletes_it(
    qtbot: QtBot, model_path: Path
) -> None:
    window = open_window(qtbot, model_path, sampling={"max_tokens": 4})
    try:
        window.input.setFocus()
        window.input.setPlainText("Name three vegetables that grow well in sandy soil, please.")
        qtbot.keyClick(window.input, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: not window.bridge.is_generating, timeout=60_000)
        conversation_id = window.conversation_id
        assert conversation_id is not None
        cache = SavedStateStore.default()
        qtbot.waitUntil(lambda: len(saved_states()) == 1 and cache.flush(0), timeout=30_000)
        assert stat.S_IMODE(saved_states()[0].stat().st_mode) == 0o600
        window.sidebar.delete(conversation_id)
        assert len(saved_states()) == 1  # in the trash it can still come back, with its state
    finally:
        window.close()
    assert saved_states() == []
