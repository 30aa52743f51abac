"""The window with real Qt widgets (offscreen), the real engine thread and the real test model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.core.history.store import HistoryStore
from app.core.modes import PRESETS, Mode, SamplingOptions
from app.core.settings import Settings
from app.ui.conversation import REGENERATE_TEMPERATURE
from app.ui.main_window import MainWindow
from tests.helpers.window import open_window, press_escape

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot: QtBot, model_path: Path) -> Iterator[MainWindow]:
    win = open_window(qtbot, model_path)
    yield win
    win.close()


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.input.setFocus()
    qtbot.keyClicks(window.input, text)
    qtbot.keyClick(window.input, Qt.Key.Key_Return)


def wait_reply(qtbot: QtBot, window: MainWindow, timeout: int = 60_000) -> None:
    qtbot.waitUntil(lambda: not window.bridge.is_generating, timeout=timeout)


def answered(window: MainWindow) -> bool:
    """The last message on screen is a whole reply, as kept in the history."""
    reply = window.chat_view.messages[-1]
    assert window.conversation_id is not None
    stored = window.store.messages(window.conversation_id)[-1]
    return (
        reply.role == "assistant"
        and bool(reply.text)
        and reply.state == "complete"
        and (stored.role, stored.content, stored.state) == ("assistant", reply.text, "complete")
    )


def test_send_streams_the_reply_token_by_token(qtbot: QtBot, window: MainWindow) -> None:
    pieces: list[str] = []
    window.bridge.token.connect(pieces.append)
    send(qtbot, window, "Name five fruits, one per line.")
    assert window.input.toPlainText() == ""
    assert window.send_button.text() == "Stop"
    wait_reply(qtbot, window)
    reply = window.chat_view.messages[-1]
    assert reply.role == "assistant" and reply.text
    assert len(pieces) >= 3
    assert window.chat_view.render_count >= 1
    assert window.send_button.text() == "Send"
    assert "tokens/s" in window.conversation.speed_label.text()
    assert window.conversation.context_meter.value() > 0
    # Both messages are in the history store, the reply complete.
    assert window.conversation_id is not None
    stored = window.store.messages(window.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].state == "complete" and stored[1].content == reply.text


def test_repaints_are_capped_while_streaming(qtbot: QtBot, window: MainWindow) -> None:
    pieces: list[str] = []
    window.bridge.token.connect(pieces.append)
    window.settings.mode_overrides["chat"]["max_tokens"] = 200
    started = time.perf_counter()
    send(qtbot, window, "Write a long story about a dragon who learns to bake bread.")
    wait_reply(qtbot, window)
    elapsed = time.perf_counter() - started
    renders = window.chat_view.render_count
    assert len(pieces) > 30
    # At most ~30 repaints a second, and fewer repaints than pieces: pieces are batched.
    assert renders <= elapsed * 35 + 2
    assert renders < len(pieces)


def test_stop_mid_reply_keeps_what_was_written(qtbot: QtBot, window: MainWindow) -> None:
    pieces: list[str] = []
    window.bridge.token.connect(pieces.append)
    window.settings.mode_overrides["chat"]["max_tokens"] = 2000
    send(qtbot, window, "Write a very long story about the sea.")
    qtbot.waitUntil(lambda: len(pieces) >= 10, timeout=30_000)
    asked = time.perf_counter()
    press_escape(qtbot, window)
    wait_reply(qtbot, window, timeout=5_000)
    assert time.perf_counter() - asked < 3.0  # tens of ms when quiet; the reply would run 2,000 tokens
    reply = window.chat_view.messages[-1]
    assert reply.state == "stopped" and reply.text
    assert window.conversation_id is not None
    stored = window.store.messages(window.conversation_id)[-1]
    assert stored.state == "stopped" and stored.content == reply.text
    # The window is usable at once.
    send(qtbot, window, "What is the capital of France?")
    wait_reply(qtbot, window)
    assert answered(window)


def test_shift_enter_is_a_new_line_not_a_send(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.keyClicks(window.input, "first line")
    qtbot.keyClick(window.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(window.input, "second line")
    assert window.input.toPlainText() == "first line\nsecond line"
    assert not window.bridge.is_generating
    assert window.chat_view.messages == []


def test_switching_mode_changes_prompt_and_sampling(qtbot: QtBot, window: MainWindow) -> None:
    code_button = next(b for b in window.mode_buttons.buttons() if b.property("mode") == "code")
    qtbot.mouseClick(code_button, Qt.MouseButton.LeftButton)
    assert window.mode == Mode.CODE
    assert window.preset().system_prompt == PRESETS[Mode.CODE].system_prompt
    assert window.preset().sampling.repeat_penalty == PRESETS[Mode.CODE].sampling.repeat_penalty
    assert window.preset().sampling.max_tokens == PRESETS[Mode.CODE].sampling.max_tokens
    assert PRESETS[Mode.CODE].sampling.max_tokens != PRESETS[Mode.CHAT].sampling.max_tokens
    window.settings.mode_overrides["code"]["max_tokens"] = 200
    send(qtbot, window, "Write a Python function that adds two numbers.")
    wait_reply(qtbot, window)
    assert window.conversation_id is not None
    assert window.store.get_conversation(window.conversation_id).mode == "code"
    assert window.conversation.engine_messages()[0]["content"] == PRESETS[Mode.CODE].system_prompt


def test_bad_gguf_gives_a_sentence_and_the_window_lives(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_text("this is not a model")
    window.handle_dropped_files([str(bad)])
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=5_000)
    assert "is not a GGUF model file" in window.banner.label.text()
    assert window.bridge.model is not None  # the loaded model is still there
    send(qtbot, window, "What is the capital of France?")
    wait_reply(qtbot, window)
    assert answered(window)


def test_regenerate_adds_a_version_of_the_last_reply(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    send(qtbot, window, "Name a color.")
    wait_reply(qtbot, window)
    last = window.chat_view.messages[-1]
    assert last.regenerate_button.isVisibleTo(window)
    sent: list[SamplingOptions] = []
    ask = window.conversation.bridge.chat
    monkeypatch.setattr(  # a spy: the real engine still answers
        window.conversation.bridge, "chat", lambda m, s, **kw: (sent.append(s), ask(m, s, **kw))[1]
    )
    qtbot.mouseClick(last.regenerate_button, Qt.MouseButton.LeftButton)
    # The starter's Chat preset is greedy, which would write the same reply again, word for word.
    assert window.conversation._preset().sampling.temperature == 0
    assert [s.temperature for s in sent] == [REGENERATE_TEMPERATURE]
    assert window.bridge.is_generating
    wait_reply(qtbot, window)
    assert window.conversation_id is not None
    stored = window.store.messages(window.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert len(window.chat_view.messages) == 2
    assert len(window.store.all_messages(window.conversation_id)) == 3  # the first reply stays a version
    assert window.chat_view.messages[-1].branch_switcher.label.text() == "2/2"


def test_edit_and_resend_the_last_question(qtbot: QtBot, window: MainWindow) -> None:
    send(qtbot, window, "What is the capital of Spain?")
    wait_reply(qtbot, window)
    question = window.chat_view.messages[0]
    assert question.edit_button.isVisibleTo(window)
    qtbot.mouseClick(question.edit_button, Qt.MouseButton.LeftButton)
    assert window.input.toPlainText() == "What is the capital of Spain?"
    assert len(window.chat_view.messages) == 2  # nothing is removed while editing
    window.input.setPlainText("What is the capital of France?")
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    wait_reply(qtbot, window)
    assert window.conversation_id is not None
    stored = window.store.messages(window.conversation_id)
    assert [m.content for m in stored][:1] == ["What is the capital of France?"] and len(stored) == 2
    assert answered(window)


def test_markdown_and_code_are_rendered(qtbot: QtBot, window: MainWindow) -> None:
    text = (
        "# Heading\n\nSome **bold** text and `inline code`.\n\n- one\n- two\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\ndef add(x, y):\n    return x + y\n```\n"
    )
    message = window.chat_view.add_message("assistant", text)
    html = message.body.toHtml()
    assert "<table" in html
    assert "Heading" in html and "font-weight" in html
    assert message.code_languages == ["python"]
    assert message.code_blocks == ["def add(x, y):\n    return x + y"]
    # Pygments coloured the keyword: 'def' sits in a span with its own colour.
    assert html.count("color:#") > 3
    # The copy link copies the code block, not the rendered text.
    message.body.copy_code.emit(0)
    assert QApplication.clipboard().text() == "def add(x, y):\n    return x + y"


def test_conversations_persist_and_reopen(qtbot: QtBot, model_path: Path) -> None:
    first = open_window(qtbot, model_path)
    send(qtbot, first, "My name is Ada. What is the capital of France?")
    wait_reply(qtbot, first)
    conversation_id = first.conversation_id
    first.close()

    second = open_window(qtbot, model_path)
    items = [second.sidebar.list.item(i) for i in range(second.sidebar.list.count())]
    ids = [i.data(Qt.ItemDataRole.UserRole) for i in items]
    assert conversation_id in ids
    assert items[0].text() == "Today"
    second.open_conversation(int(conversation_id))  # type: ignore[arg-type]
    # The transcript is built in short slices, newest first, so the window never stalls on a long one.
    qtbot.waitUntil(
        lambda: [m.role for m in second.chat_view.messages] == ["user", "assistant"], timeout=10_000
    )
    send(qtbot, second, "What is my name?")
    wait_reply(qtbot, second)
    engine_messages = second.conversation.engine_messages()
    assert any("Ada" in m["content"] for m in engine_messages)
    second.close()


def test_search_filters_the_conversation_list(qtbot: QtBot, window: MainWindow) -> None:
    send(qtbot, window, "Tell me about zebras.")
    wait_reply(qtbot, window)
    window.new_conversation()
    send(qtbot, window, "Tell me about giraffes.")
    wait_reply(qtbot, window)
    qtbot.keyClick(window, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    assert window.sidebar.search_box.hasFocus()
    qtbot.keyClicks(window.sidebar.search_box, "zebras")
    qtbot.waitUntil(
        lambda: (
            [
                window.sidebar.list.item(i).text()
                for i in range(window.sidebar.list.count())
                if window.sidebar.list.item(i).data(Qt.ItemDataRole.UserRole) is not None
            ]
            == ["Tell me about zebras."]
        ),
        timeout=3_000,
    )


def test_no_model_opens_the_window_without_loading(qtbot: QtBot, model_path: Path) -> None:
    settings = Settings(context_size=2048, last_model=str(model_path))
    window = MainWindow(settings=settings, store=HistoryStore(), open_default_model=False)
    qtbot.addWidget(window)
    window.show()
    assert not window.bridge.is_loading and window.bridge.model is None
    assert window.banner.isHidden()
    window.input.setPlainText("Hello")
    window.send()
    assert "No model is loaded" in window.banner.label.text()
    assert window.input.toPlainText() == "Hello"
    window.close()


def test_a_conversation_of_5000_messages_opens_without_freezing_the_window(
    qtbot: QtBot, model_path: Path
) -> None:
    import time

    from app.bench.gui import GapTimer
    from app.ui.transcript.chat_view import PAGE

    store = HistoryStore()
    conversation = store.create_conversation(mode="chat", model=str(model_path))
    for index in range(5000):
        store.add_message(conversation.id, "user" if index % 2 == 0 else "assistant", f"Message {index} " * 8)
    window = MainWindow(settings=Settings(), store=store, open_default_model=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    qtbot.wait(300)  # the window's own first paint is not what is measured
    timer = GapTimer()
    timer.start()
    started = time.perf_counter()
    window.open_conversation(conversation.id)
    qtbot.waitUntil(lambda: len(window.chat_view.messages) == PAGE, timeout=10_000)
    opened = time.perf_counter() - started
    qtbot.wait(100)
    timer.stop()
    print(
        f"5,000-message conversation: newest {PAGE} shown in {opened * 1000:.0f} ms, worst gap {timer.worst * 1000:.1f} ms"
    )
    assert window.chat_view.messages[-1].text.startswith("Message 4999")
    assert opened < 5.0 and timer.worst < 1.0  # generous: the figure printed is the measurement
    window.close()
