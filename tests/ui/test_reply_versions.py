"""Versions of a reply in the real window: each keeps its own label (what ended it, which engine wrote it), the
"< n/m >" shows while a new version streams, the status bar describes the version on screen, and any reply can
be written again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.history.store import HistoryStore
from app.core.llm.remote_info import RemoteModelInfo
from app.core.settings import Settings
from app.ui.main_window import MainWindow
from app.ui.transcript.chat_view import MessageWidget
from tests.fixtures.misbehaving_openai import MODEL, RunningServer, running_server
from tests.helpers.window import open_window

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def faulty() -> Iterator[RunningServer]:
    with running_server() as server:
        yield server


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.input.setFocus()
    window.input.setPlainText(text)
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.bridge.is_generating, timeout=60_000)


def watch_streaming_switcher(window: MainWindow) -> list[tuple[bool, str, bool, bool]]:
    """While the reply streams (at each piece): whether its "< n/m >" shows, its text, and its arrows."""
    seen: list[tuple[bool, str, bool, bool]] = []

    def look(_text: str) -> None:
        streaming = window.chat_view.streaming_message
        if streaming is not None:
            switcher = streaming.branch_switcher
            seen.append(
                (
                    switcher.isVisibleTo(window),
                    switcher.label.text(),
                    switcher.previous_button.isEnabled(),
                    switcher.next_button.isEnabled(),
                )
            )

    window.conversation.bridge.token.connect(look)
    return seen


def author(message: MessageWidget) -> str:
    return message.author_label.text()


def test_a_failed_server_reply_keeps_its_label_when_written_again_on_this_computer(
    qtbot: QtBot, faulty: RunningServer, model_path: Path
) -> None:
    window = open_window(
        qtbot, model_path, engine="server", remote_url=faulty.url("drop"), sampling={"max_tokens": 8}
    )
    assert isinstance(window.bridge.model, RemoteModelInfo)
    send(qtbot, window, "Hello?")
    qtbot.waitUntil(lambda: "broke off" in window.banner.label.text(), timeout=10_000)
    failed = window.chat_view.messages[-1]
    assert failed.text == "Hello wor" and failed.note_label.text() == "Failed"
    assert f"{MODEL} (server)" in author(failed)
    assert window.conversation.speed_label.text() == ""  # a reply that broke off has no speed to tell

    # The server is given up on; the reply is written again by the model on this computer.
    window.settings.engine = "local"
    window.engine_switcher.apply(window.settings)
    qtbot.waitUntil(
        lambda: window.bridge.model is not None and not isinstance(window.bridge.model, RemoteModelInfo),
        timeout=30_000,
    )
    local_name = window.bridge.model.display_name
    streaming = watch_streaming_switcher(window)
    failed = window.chat_view.messages[-1]
    qtbot.mouseClick(failed.regenerate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.bridge.is_generating, timeout=60_000)
    assert streaming and all(seen == (True, "2/2", False, False) for seen in streaming)
    new = window.chat_view.messages[-1]
    assert new.branch_switcher.label.text() == "2/2" and new.branch_switcher.previous_button.isEnabled()
    assert local_name in author(new) and "(server)" not in author(new)

    def old_version_shows_its_own_label() -> None:
        qtbot.mouseClick(
            window.chat_view.messages[-1].branch_switcher.previous_button, Qt.MouseButton.LeftButton
        )
        old = window.chat_view.messages[-1]
        assert old.text == "Hello wor" and old.branch_switcher.label.text() == "1/2"
        assert old.note_label.text() == "Failed"
        assert f"{MODEL} (server)" in author(old)

    old_version_shows_its_own_label()

    # The same after reopening the conversation, with the newest version on screen first.
    conversation_id = window.conversation_id
    assert conversation_id is not None
    qtbot.mouseClick(window.chat_view.messages[-1].branch_switcher.next_button, Qt.MouseButton.LeftButton)
    window.new_conversation()
    window.open_conversation(conversation_id)
    qtbot.waitUntil(lambda: len(window.chat_view.messages) == 2, timeout=5_000)
    assert local_name in author(window.chat_view.messages[-1])
    assert window.chat_view.messages[-1].note_label.text() == ""
    old_version_shows_its_own_label()

    store = HistoryStore()
    kept = store.get_message(window.store.messages(conversation_id)[-1].id)
    assert kept.state == "stopped" and kept.stats is not None
    assert (kept.stats["finish_reason"], kept.stats["engine"], kept.stats["model"]) == (
        "failed",
        "server",
        MODEL,
    )
    store.close()
    window.close()


def stats(tokens_per_second: float, prompt_tokens: int, generated_tokens: int) -> dict[str, Any]:
    return {
        "tokens_per_second": tokens_per_second,
        "prompt_tokens": prompt_tokens,
        "generated_tokens": generated_tokens,
        "context_size": 2048,
        "model": "/models/tiny-model-Q4_K_M.gguf",
    }


def test_the_status_bar_describes_the_version_on_screen(qtbot: QtBot) -> None:
    store = HistoryStore()
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, "user", "Name a bird.")
    store.add_message(conversation.id, "assistant", "A robin.", stats=stats(12.5, 30, 4))
    store.add_message(
        conversation.id,
        "assistant",
        "A sparrow, small",
        state="stopped",
        parent_id=question.id,
        stats={"finish_reason": "failed", "engine": "server", "model": "far-model"},
    )
    store.add_message(
        conversation.id, "assistant", "An owl.", stats=stats(40.0, 30, 300), parent_id=question.id
    )
    window = MainWindow(settings=Settings(), store=store, open_default_model=False)
    qtbot.addWidget(window)
    window.show()
    conversation_view = window.conversation
    window.open_conversation(conversation.id)
    qtbot.waitUntil(lambda: len(window.chat_view.messages) == 2, timeout=5_000)
    assert window.chat_view.messages[-1].text == "An owl."
    assert conversation_view.speed_label.text() == "40.0 tokens/s"
    assert (
        conversation_view.context_meter.isVisibleTo(window) and conversation_view.context_meter.value() == 330
    )

    def previous() -> MessageWidget:
        qtbot.mouseClick(
            window.chat_view.messages[-1].branch_switcher.previous_button, Qt.MouseButton.LeftButton
        )
        return window.chat_view.messages[-1]

    failed = previous()
    assert failed.text == "A sparrow, small" and failed.note_label.text() == "Failed"
    assert "far-model (server)" in author(failed)
    assert conversation_view.speed_label.text() == ""  # it broke off: no speed, no context figure
    assert not conversation_view.context_meter.isVisibleTo(window)

    robin = previous()
    assert robin.text == "A robin." and "tiny-model-Q4_K_M" in author(robin)
    assert conversation_view.speed_label.text() == "12.5 tokens/s"
    assert (
        conversation_view.context_meter.isVisibleTo(window) and conversation_view.context_meter.value() == 34
    )
    window.close()


def test_an_earlier_reply_can_be_written_again(qtbot: QtBot, model_path: Path) -> None:
    window = open_window(qtbot, model_path, sampling={"max_tokens": 8})
    send(qtbot, window, "Name a fruit.")
    send(qtbot, window, "Name a vegetable.")
    before = [m.text for m in window.chat_view.messages]
    assert len(before) == 4
    first_reply = window.chat_view.messages[1]
    assert first_reply.regenerate_button.isVisibleTo(window)  # not only the last reply

    asked: list[list[str]] = []
    chat = window.conversation.bridge.chat

    def spy(messages: Any, sampling: Any, **options: Any) -> Any:  # the real engine still answers
        asked.append([m["content"] for m in messages[1:]])
        return chat(messages, sampling, **options)

    window.conversation.bridge.chat = spy  # type: ignore[method-assign]
    streaming = watch_streaming_switcher(window)
    assert "tokens/s" in window.conversation.speed_label.text()
    qtbot.mouseClick(first_reply.regenerate_button, Qt.MouseButton.LeftButton)
    assert asked == [["Name a fruit."]]  # the conversation up to that reply's question, nothing below it
    # Not the old version's figure while the new one streams.
    assert window.conversation.speed_label.text() == ""
    assert not any(m.regenerate_button.isVisibleTo(window) for m in window.chat_view.messages)
    qtbot.waitUntil(lambda: not window.bridge.is_generating, timeout=60_000)
    assert streaming and all(seen == (True, "2/2", False, False) for seen in streaming)

    shown = window.chat_view.messages
    assert [m.text for m in shown][:1] == ["Name a fruit."] and len(shown) == 2  # the new version's thread
    assert shown[1].branch_switcher.label.text() == "2/2" and shown[1].regenerate_button.isVisibleTo(window)
    conversation_id = window.conversation_id
    assert conversation_id is not None
    assert len(window.store.all_messages(conversation_id)) == 5  # nothing was lost

    qtbot.mouseClick(shown[1].branch_switcher.previous_button, Qt.MouseButton.LeftButton)
    assert [m.text for m in window.chat_view.messages] == before  # the old version, with the turns below it
    window.close()
