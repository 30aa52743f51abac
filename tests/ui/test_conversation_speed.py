"""The window teaches the model menu: each timed reply adds a speed sample with how busy the machine was."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.models.measured import measured_speeds
from app.ui.conversation import MIN_TIMED_TOKENS
from tests.helpers.window import open_window

pytestmark = pytest.mark.gui


def test_a_reply_records_a_speed_sample_with_the_machine_s_busy_share(qtbot: QtBot, model_path: Path) -> None:
    window = open_window(qtbot, model_path)
    try:
        window.settings.mode_overrides["chat"]["max_tokens"] = MIN_TIMED_TOKENS + 16
        window.input.setFocus()
        qtbot.keyClicks(window.input, "Write a long story about a lighthouse keeper.")
        qtbot.keyClick(window.input, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: not window.client.is_generating, timeout=120_000)
        assert window.conversation.last_stats is not None
        assert window.conversation.last_stats.generated_tokens >= MIN_TIMED_TOKENS
        (record,) = measured_speeds()
        assert record.key == model_path.name and record.file_size == model_path.stat().st_size
        (sample,) = record.samples
        assert sample.tokens_per_second == pytest.approx(window.conversation.last_stats.tokens_per_second)
        assert sample.busy_share is not None and 0.0 <= sample.busy_share <= 1.0
    finally:
        window.close()
