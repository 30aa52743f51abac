"""The sources under an answer, on real widgets: one link per document page (its passages inside), a click opens
its passages with the sentence that matched the question marked, a second closes them; Open hands the file to the
system's viewer at that page, or says why it cannot; a stored reply shows its sources when the transcript is
rebuilt from history."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from pytestqt.qtbot import QtBot

from app.core.history.sources import ReplySource
from app.ui.transcript.chat_view import ChatView, HistoryEntry
from app.ui.transcript.sources import SourcesPanel, show_sources, sources_of
from tests.fixtures.documents import REPORT_PAGES, build_pdf

pytestmark = pytest.mark.gui

QUESTION = "What was the total revenue?"
SOURCES = [
    ReplySource(
        "harbour.pdf",
        "page 3",
        3,
        "Finances. Total revenue for the year\nwas 4.8 million euros. Spending rose.",
        question=QUESTION,
    ),
    ReplySource(
        "harbour.pdf",
        "page 3",
        3,
        "Most of the revenue came\nfrom mooring fees.\n\nAnd cargo dues.",
        question=QUESTION,
    ),
    ReplySource("notes.docx", 'section "Outlook & plans"', None, "The board plans to extend the north quay."),
]


class OpenedUrlRecorder:
    """Stands in for QDesktopServices.openUrl, which would start a real viewer (none can run here): it records
    the URL it is given and answers as the system does when a program took it."""

    def __init__(self) -> None:
        self.urls: list[QUrl] = []

    def __call__(self, url: QUrl) -> bool:
        self.urls.append(QUrl(url))
        return True


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> OpenedUrlRecorder:
    recorder = OpenedUrlRecorder()
    monkeypatch.setattr(QDesktopServices, "openUrl", recorder)
    return recorder


def test_each_page_is_one_source_whose_passages_open_with_the_matching_sentence_marked(qtbot: QtBot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    view.resize(600, 400)
    view.show()
    message = view.begin_reply()
    panel = show_sources(message.body, SOURCES)
    assert panel is not None and sources_of(message) is panel
    assert panel.references() == ["harbour.pdf, page 3", 'notes.docx, section "Outlook & plans"']
    links = panel.links.text()
    assert 'href="source:1"' in links and "section &quot;Outlook &amp; plans&quot;" in links
    assert "(2)" not in links and 'href="open:' not in links  # one link per page; no file known, no ↗
    assert panel.passage.isHidden()
    with qtbot.waitSignal(panel.passage_shown) as shown:
        panel.links.linkActivated.emit("source:0")
    assert shown.args == [0]
    assert not panel.passage.isHidden()
    shown_html = panel.passage_text.text()
    # Both passages of page 3, as they read (not as the PDF's lines broke them), paragraphs kept apart, and the
    # sentence holding the question's words marked.
    assert "Most of the revenue came from mooring fees.<br><br>And cargo dues." in shown_html
    assert panel.marked == ["Total revenue for the year was 4.8 million euros."]  # the best of the page
    assert (
        '<span style="' in shown_html
        and "Total revenue for the year was 4.8 million euros.</span>" in shown_html
    )
    assert "Spending rose.</span>" not in shown_html
    # Not known where the file is: no Open, and a sentence says so.
    assert panel.open_button.isHidden() and "cannot be opened" in panel.file_note.text()
    panel.links.linkActivated.emit("source:1")  # another source replaces the one shown
    assert "north quay" in panel.passage_text.text() and panel.marked == []
    panel.links.linkActivated.emit("source:1")
    assert panel.passage.isHidden() and panel.shown is None
    panel.links.linkActivated.emit("source:9")  # a link that is not ours changes nothing
    panel.links.linkActivated.emit("https://example.com")
    assert panel.shown is None
    # Shown again (the reply was rewritten), the panel is replaced, not doubled; no sources, no panel.
    show_sources(message.body, SOURCES[:1])
    assert len(message.findChildren(SourcesPanel)) == 1
    assert show_sources(message.body, []) is None
    qtbot.waitUntil(lambda: sources_of(message) is None, timeout=2000)


def test_open_asks_the_viewer_for_the_file_at_its_page_and_says_when_the_file_is_gone(
    qtbot: QtBot, tmp_path: Path, opened: OpenedUrlRecorder
) -> None:
    pdf = build_pdf(tmp_path / "harbour report.pdf", REPORT_PAGES)
    sources = [
        ReplySource("harbour report.pdf", "page 3", 3, REPORT_PAGES[2], question=QUESTION, path=str(pdf)),
        ReplySource("harbour report.pdf", "page 1", 1, REPORT_PAGES[0], question=QUESTION, path=str(pdf)),
    ]
    view = ChatView()
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    panel = show_sources(view.begin_reply().body, sources)
    assert panel is not None
    assert 'href="open:0"' in panel.links.text() and 'href="open:1"' in panel.links.text()
    panel.links.linkActivated.emit("source:0")
    qtbot.waitUntil(panel.open_button.isVisible, timeout=2000)
    assert panel.open_button.text() == "Open at page 3"
    assert "page 3" in panel.open_button.toolTip() and "first page" in panel.open_button.toolTip()
    with qtbot.waitSignal(panel.file_opened):
        qtbot.mouseClick(panel.open_button, Qt.MouseButton.LeftButton)
    (url,) = opened.urls
    assert url.isLocalFile() and Path(url.toLocalFile()) == pdf and url.fragment() == "page=3"
    panel.links.linkActivated.emit("open:1")  # the ↗ beside a reference opens its page straight away
    assert opened.urls[-1].fragment() == "page=1" and Path(opened.urls[-1].toLocalFile()) == pdf
    assert panel.shown == 0  # and leaves the passages shown as they were

    pdf.rename(tmp_path / "moved.pdf")
    qtbot.mouseClick(panel.open_button, Qt.MouseButton.LeftButton)
    assert len(opened.urls) == 2  # nothing more was asked of the viewer
    assert panel.file_note.isVisible() and str(pdf) in panel.file_note.text()
    assert "moved" in panel.file_note.text() and panel.open_button.isHidden()
    panel.links.linkActivated.emit("open:1")
    assert len(opened.urls) == 2 and panel.shown == 1 and panel.file_note.isVisible()


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
    assert panel is not None and len(panel.sources) == 2  # two pages, three passages
    assert [len(group.passages) for group in panel.sources] == [2, 1]
    layout = with_sources[0].layout()
    assert layout.indexOf(panel) == layout.indexOf(with_sources[0].body) + 1  # right under the answer
