"""Before a reply's first word its bubble says the message is being read, how far, how long is left, and whether
other programs are slowing it (real model, real widgets)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.core.llm.load_options import LoadOptions
from app.core.llm.prompt_progress import OTHERS_BUSY_NOTE
from app.core.modes import SamplingOptions
from app.ui.engine_bridge import EngineBridge
from app.ui.transcript.chat_view import ChatView
from app.ui.transcript.waiting import waiting_note

pytestmark = pytest.mark.gui


def test_the_note_gives_the_share_read_while_some_is_left_and_whole_seconds() -> None:
    assert waiting_note(0.2, None) == "Reading your message…"
    assert waiting_note(3.7, (64, 160)) == "Reading your message… 40% · 3 s"
    assert waiting_note(5.0, (160, 160)) == "Reading your message… · 5 s"


def test_the_note_gives_the_time_left_instead_of_the_seconds_and_says_when_others_use_the_cpu() -> None:
    assert waiting_note(3.7, (72, 160), seconds_left=12.4) == "Reading your message… 45% · about 12 s left"
    assert waiting_note(3.7, (160, 160), seconds_left=0.0) == "Reading your message… · 3 s"
    assert waiting_note(3.7, (72, 160), 95, others_busy=True) == (
        f"Reading your message… 45% · about 2 min left · {OTHERS_BUSY_NOTE}"
    )


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


@pytest.fixture
def slow_bridge(qtbot: QtBot, model_path: Path) -> Iterator[EngineBridge]:
    """Batches of 32 tokens: a long question is read in dozens of them, each reported."""
    loaded = EngineBridge()
    with qtbot.waitSignal(loaded.model_loaded, timeout=60_000):
        loaded.load(str(model_path), LoadOptions(context_size=2048, batch_size=32))
    yield loaded
    loaded.shutdown()


def test_the_bubble_shows_the_time_left_and_that_other_programs_use_the_cpu(
    qtbot: QtBot, slow_bridge: EngineBridge
) -> None:
    """A program spinning on the CPU while a long question is read: the bubble says how long is left, measured
    from the batches read, and why it is slow."""
    view = ChatView()
    qtbot.addWidget(view)
    view.show()
    slow_bridge.prompt_progress.connect(view.show_prompt_progress)
    slow_bridge.token.connect(view.append_to_reply)
    shown: list[str] = []
    slow_bridge.prompt_progress.connect(
        lambda _d, _t: shown.append(view.streaming_message.body.toPlainText())  # type: ignore[union-attr]
    )
    question = (
        " ".join(f"keeper{index % 5} of the light" for index in range(130)) + "\nWhat repeats? One word."
    )
    # Two spinners: on a test worker held to one CPU (tests/conftest.py), one spinner would only halve that CPU
    # with the engine, the threshold itself; two take most of it, as a busy machine does.
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        view.begin_reply()
        with qtbot.waitSignal(slow_bridge.reply_finished, timeout=300_000) as finished:
            slow_bridge.chat(
                [{"role": "user", "content": question}], SamplingOptions(temperature=0.0, max_tokens=2)
            )
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    view.finish_reply(finished.args[0], "complete")
    print(f"{finished.args[0].evaluated_tokens} tokens read; {len(shown)} notes:", *shown[::5], sep="\n")
    assert all(note.startswith("Reading your message…") for note in shown)
    assert any("%" in note and " left" in note for note in shown), shown
    assert not any(" left" in note for note in shown[:1]), "no time left before a batch was timed"
    assert any(note.endswith(OTHERS_BUSY_NOTE) for note in shown), shown
