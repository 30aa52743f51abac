"""The sources under an answer, on real widgets: one link per passage, a click opens its text, a second closes it,
and a stored reply shows its sources when the transcript is rebuilt from history."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from app.core.history.sources import ReplySource
from app.ui.transcript.chat_view import ChatView, HistoryEntry
from app.ui.transcript.sources import SourcesPanel, show_sources, sources_of

pytestmark = pytest.mark.gui

SOURCES = [
    ReplySource("harbour.pdf", "page 3", 3, "Total revenue for the year was 4.8 million euros."),
    ReplySource(
        "harbour.pdf", "page 3", 3, "Most of the revenue came\nfrom mooring fees.\n\nAnd cargo dues."
    ),
    ReplySource("notes.docx", 'section "Outlook & plans"', None, "The board plans to extend the north quay."),
]


def test_each_passage_is_a_link_that_opens_and_closes_its_text(qtbot: QtBot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    view.resize(600, 400)
    view.show()
    message = view.begin_reply()
    panel = show_sources(message.body, SOURCES)
    assert panel is not None and sources_of(message) is panel
    assert panel.references() == [
        "harbour.pdf, page 3",
        "harbour.pdf, page 3 (2)",
        'notes.docx, section "Outlook & plans"',
    ]
    links = panel.links.text()
    assert 'href="source:2"' in links and "section &quot;Outlook &amp; plans&quot;" in links
    assert panel.passage.isHidden()
    with qtbot.waitSignal(panel.passage_shown) as shown:
        panel.links.linkActivated.emit("source:1")
    assert shown.args == [1]
    assert not panel.passage.isHidden()
    # As the passage reads, not as the PDF's lines broke it; paragraphs stay apart.
    assert panel.passage_text.text() == "Most of the revenue came from mooring fees.\n\nAnd cargo dues."
    assert "page 3 (2)" in panel.passage_title.text()
    panel.links.linkActivated.emit("source:0")  # another passage replaces the one shown
    assert panel.passage_text.text() == SOURCES[0].text
    panel.links.linkActivated.emit("source:0")
    assert panel.passage.isHidden() and panel.shown is None
    panel.links.linkActivated.emit("source:9")  # a link that is not ours changes nothing
    panel.links.linkActivated.emit("https://example.com")
    assert panel.shown is None
    # Shown again (the reply was rewritten), the panel is replaced, not doubled; no sources, no panel.
    show_sources(message.body, SOURCES[:1])
    assert len(message.findChildren(SourcesPanel)) == 1
    assert show_sources(message.body, []) is None
    qtbot.waitUntil(lambda: sources_of(message) is None, timeout=2000)


def test_a_stored_reply_shows_its_sources_when_rebuilt(qtbot: QtBot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    view.show()
    view.show_history(
        [
            HistoryEntry("user", "What was the revenue?"),
            HistoryEntry("assistant", "It was 4.8 million euros.", sources=tuple(SOURCES)),
            HistoryEntry("user", "Thanks"),
            HistoryEntry("assistant", "You are welcome."),
        ]
    )
    qtbot.waitUntil(lambda: len(view.messages) == 4, timeout=5000)
    with_sources = [m for m in view.messages if sources_of(m) is not None]
    assert [m.text for m in with_sources] == ["It was 4.8 million euros."]
    panel = sources_of(with_sources[0])
    assert panel is not None and len(panel.sources) == 3
    layout = with_sources[0].layout()
    assert layout.indexOf(panel) == layout.indexOf(with_sources[0].body) + 1  # right under the answer
