"""Before a reply's first word its bubble says the message is being read, how far and for how long (real model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.core.llm.load_options import LoadOptions
from app.core.modes import SamplingOptions
from app.ui.engine_bridge import EngineBridge
from app.ui.transcript.chat_view import ChatView
from app.ui.transcript.waiting import waiting_note

pytestmark = pytest.mark.gui


def test_the_note_gives_the_share_read_while_some_is_left_and_whole_seconds() -> None:
    assert waiting_note(0.2, None) == "Reading your message…"
    assert waiting_note(3.7, (64, 160)) == "Reading your message… 40% · 3 s"
    assert waiting_note(5.0, (160, 160)) == "Reading your message… · 5 s"


@pytest.fixture
def bridge(qtbot: QtBot, model_path: Path) -> Iterator[EngineBridge]:
    loaded = EngineBridge()
    with qtbot.waitSignal(loaded.model_loaded, timeout=60_000):
        loaded.load(str(model_path), LoadOptions(context_size=1024, batch_size=32))
    yield loaded
    loaded.shutdown()


def test_the_bubble_shows_the_prompt_being_read_then_the_reply_replaces_it(
    qtbot: QtBot, bridge: EngineBridge
) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    view.show()
    bridge.prompt_progress.connect(view.show_prompt_progress)
    bridge.token.connect(view.append_to_reply)
    shown: list[str] = []
    bridge.prompt_progress.connect(lambda _d, _t: shown.append(view.streaming_message.body.toPlainText()))  # type: ignore[union-attr]
    message = view.begin_reply()
    assert message.body.toPlainText() == "Reading your message…"
    question = " ".join(f"keeper{index % 5}" for index in range(120)) + "\nWhat word repeats? One word."
    with qtbot.waitSignal(bridge.reply_finished, timeout=120_000) as finished:
        bridge.chat([{"role": "user", "content": question}], SamplingOptions(temperature=0.0, max_tokens=6))
    view.finish_reply(finished.args[0], "complete")
    assert any("%" in note for note in shown), shown
    assert all(note.startswith("Reading your message…") for note in shown)
    assert "Reading" not in message.body.toPlainText() and message.text
