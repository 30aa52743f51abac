"""The window's conversation on the real model: a reply that loops is stopped and kept up to its first telling."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.ui.main_window import MainWindow
from tests.helpers.window import open_window

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot: QtBot, model_path: Path) -> Iterator[MainWindow]:
    win = open_window(qtbot, model_path, sampling={"max_tokens": 96})
    yield win
    win.close()


def test_a_reply_that_loops_is_stopped_and_shown_up_to_its_first_telling(
    qtbot: QtBot, window: MainWindow
) -> None:
    sentence = "The lighthouse lamp is lit at dusk every single evening."
    window.input.setPlainText(f"Write this sentence five times, nothing else: {sentence}")
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.client.is_generating, timeout=180_000)
    answer = window.chat_view.messages[-1]
    assert answer.text.count(sentence) == 1, answer.text
    assert answer.state == "complete"
    assert window.conversation_id is not None
    stored = window.store.messages(window.conversation_id)[-1]
    assert stored.content == answer.text and stored.state == "complete"
    assert stored.generated_tokens is not None and stored.generated_tokens < 96  # stopped, not run out
