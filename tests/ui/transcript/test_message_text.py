"""A long reply streamed into the real chat view: finished parts sealed and never set again, the final text the
same as a full render, and a theme change that re-colours without rendering the Markdown again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.bench.gui_transcript import long_reply_text, tokens_of
from app.ui.transcript.chat_view import ChatView, MessageBody
from app.ui.transcript.markdown_render import DARK, LIGHT, MarkdownRenderer
from app.ui.transcript.message_text import CHUNK_CHARS

pytestmark = pytest.mark.gui


def _counting(calls: list[str], name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return method(*args, **kwargs)

    return counted


def _letters(text: str) -> str:
    return "".join(text.split())


def test_a_long_reply_streams_into_sealed_parts_that_are_set_once(qtbot: QtBot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    text = long_reply_text(12_000)
    message = view.begin_reply()
    sets: dict[int, list[str]] = {}  # per view, each time it was set
    sealed: dict[int, int] = {}  # per sealed view, how often it had been set when a view came after it
    tokens = tokens_of(text)
    for start in range(0, len(tokens), 40):
        view.append_to_reply("".join(tokens[start : start + 40]))
        qtbot.waitUntil(lambda: not view.pending_text, timeout=2000)
        for body in message.bodies:
            if id(body) not in sets:
                sets[id(body)] = []
                body.setHtml = _counting(sets[id(body)], "set", body.setHtml)  # type: ignore[method-assign]
        for body in message.bodies[:-1]:
            sealed.setdefault(id(body), len(sets[id(body)]))
    assert len(message.bodies) >= len(text) // CHUNK_CHARS // 2, (
        "finished parts are sealed into their own views"
    )
    assert all(len(sets[body]) == count for body, count in sealed.items()), "a sealed view is never set again"
    assert len(sets[id(message.bodies[-1])]) > 3  # the open one is set as the text grows
    view.finish_reply(None, "complete")
    full = MarkdownRenderer(LIGHT).render(text)
    assert message.text == text
    assert message.code_blocks == full.code_blocks and message.code_languages == full.languages
    whole = MessageBody()
    whole.setHtml(full.html)
    assert _letters("".join(body.toPlainText() for body in message.bodies)) == _letters(whole.toPlainText())


def test_a_theme_change_recolours_without_rendering_the_markdown_again(qtbot: QtBot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    view.show()
    text = long_reply_text(4_000)
    view.add_message("assistant", text)
    rendered: list[str] = []
    renderer = view._renderer
    renderer.render_template = _counting(rendered, "render", renderer.render_template)  # type: ignore[method-assign]
    renderer.parse = _counting(rendered, "parse", renderer.parse)  # type: ignore[method-assign]
    view.set_palette(DARK)
    assert rendered == []
    html = view.messages[0].body.toHtml()
    assert DARK.text in html and LIGHT.text not in html
    whole = MessageBody()
    whole.setHtml(MarkdownRenderer(DARK).render(text).html)
    assert view.messages[0].body.toHtml() == whole.toHtml()
