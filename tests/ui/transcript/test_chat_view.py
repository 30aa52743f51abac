from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from app.ui.transcript.chat_view import ChatView

pytestmark = pytest.mark.gui


def test_streamed_pieces_are_batched_into_few_repaints(qtbot: QtBot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    view.show()
    message = view.begin_reply()
    for _ in range(200):
        view.append_to_reply("word ")
    assert message.text == ""  # nothing repainted yet: pieces wait for the next frame
    qtbot.waitUntil(lambda: message.text.count("word") == 200, timeout=2000)
    assert view.render_count <= 2
    view.finish_reply(None, "complete")
    assert message.state == "complete"
    assert message.regenerate_button.isVisibleTo(view)


def test_view_follows_the_end_unless_scrolled_up(qtbot: QtBot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    view.resize(500, 300)
    view.show()
    for index in range(20):
        view.add_message("user" if index % 2 == 0 else "assistant", f"Message {index}\n\n" + "text " * 40)
    qtbot.waitUntil(lambda: view.verticalScrollBar().maximum() > 0, timeout=2000)
    view.scroll_to_end()
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.value() == bar.maximum(), timeout=2000)

    view.begin_reply()
    view.append_to_reply("more text " * 100)
    qtbot.waitUntil(lambda: bar.value() == bar.maximum() and view.following, timeout=2000)

    bar.setValue(0)  # the user scrolls up to read
    assert not view.following
    view.append_to_reply("even more " * 100)
    qtbot.wait(200)
    assert bar.value() == 0
    view.finish_reply(None, "complete")


def test_only_last_question_and_reply_offer_edit_and_regenerate(qtbot: QtBot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    view.show()
    for role in ("user", "assistant", "user", "assistant"):
        view.add_message(role, role)
    edits = [not m.edit_button.isHidden() for m in view.messages]
    regenerates = [not m.regenerate_button.isHidden() for m in view.messages]
    assert edits == [False, False, True, False]
    assert regenerates == [False, False, False, True]
