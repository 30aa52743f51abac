"""The window's conversation on the real test model: a reply that loops is stopped and kept up to its first
telling."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.chat.repetition import RepetitionGuard
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
    streamed: list[str] = []
    window.bridge.token.connect(streamed.append)
    window.input.setPlainText(f"Write this sentence five times, nothing else: {sentence}")
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.bridge.is_generating, timeout=180_000)
    answer = window.chat_view.messages[-1]
    assert answer.state == "complete"
    assert window.conversation_id is not None
    stored = window.store.messages(window.conversation_id)[-1]
    assert stored.content == answer.text and stored.state == "complete"
    assert stored.generated_tokens is not None
    # Whether the model loops here depends on its greedy wording (the CPU, llama.cpp's version): a reply that
    # loops is stopped and shown up to its first telling, one that does not is shown whole.
    written = "".join(streamed)
    print(f"{stored.generated_tokens} tokens written, looped: {loops(written)}; shown: {answer.text!r}")
    assert answer.text and not loops(answer.text)
    if loops(written):
        assert stored.generated_tokens < 96  # stopped, not run out
        assert written.startswith(answer.text) and len(answer.text) < len(written)
    else:
        assert answer.text == written


def loops(text: str) -> bool:
    """Whether ``text``, streamed, repeated a passage of itself past the copies the question asked for."""
    guard = RepetitionGuard(requested=5)
    return any(guard.feed(text[index : index + 4]) for index in range(0, len(text), 4))
