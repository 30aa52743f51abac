"""The window teaches the model menu: each timed reply adds a speed sample with how busy the machine was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.llm.saved_state_store import remember_model_digest
from app.core.models.measured import measured_speeds
from app.ui.conversation import MIN_TIMED_TOKENS
from tests.helpers.window import open_window

pytestmark = pytest.mark.gui

STORIES = (
    "Write a long story about a lighthouse keeper.",
    "Write a very long story about a dragon.",
    "Count from one to fifty, in words.",
)


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def test_a_reply_records_a_speed_sample_with_the_machine_s_busy_share(qtbot: QtBot, model_path: Path) -> None:
    # Its sha256 known, as a downloaded model's is: no hash of the file (for its saved states) shares the machine
    # with the reply, which would make it no measurement.
    remember_model_digest(model_path, sha256_of(model_path))
    window = open_window(qtbot, model_path)
    try:
        window.settings.mode_overrides["chat"]["max_tokens"] = MIN_TIMED_TOKENS + 16
        # How long the model's greedy reply is depends on its wording: asked in a new chat until one is long
        # enough to time, a shorter one recording nothing.
        for request in STORIES:
            window.new_conversation()
            window.input.setFocus()
            qtbot.keyClicks(window.input, request)
            qtbot.keyClick(window.input, Qt.Key.Key_Return)
            qtbot.waitUntil(lambda: not window.bridge.is_generating, timeout=120_000)
            assert window.conversation.last_stats is not None
            if window.conversation.last_stats.generated_tokens >= MIN_TIMED_TOKENS:
                break
            assert measured_speeds() == []
        assert window.conversation.last_stats.generated_tokens >= MIN_TIMED_TOKENS
        (record,) = measured_speeds()
        assert record.key == model_path.name and record.file_size == model_path.stat().st_size
        (sample,) = record.samples
        assert sample.tokens_per_second == pytest.approx(window.conversation.last_stats.tokens_per_second)
        assert sample.busy_share is not None and 0.0 <= sample.busy_share <= 1.0
    finally:
        window.close()
