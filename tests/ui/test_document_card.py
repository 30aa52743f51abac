"""The document card: its style menu, Qt's own ``style()`` left alone, and a summary's progress within its part."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QStyle
from pytestqt.qtbot import QtBot

from app.core.documents.document import Section, make_document
from app.core.documents.summary_types import STYLE_LABELS
from app.ui.document_card import DocumentCard, ReadingCard

pytestmark = pytest.mark.gui


def test_the_chosen_style_is_asked_for_and_qt_style_still_works(qtbot: QtBot) -> None:
    card = DocumentCard(make_document("notes.txt", "text", [Section("lines 1-2", "Hello.\nWorld.")]))
    qtbot.addWidget(card)
    # Qt calls style() on every widget while painting it; it must stay Qt's.
    assert isinstance(card.style(), QStyle)
    box = card.style_box
    assert [box.itemText(i) for i in range(box.count())] == list(STYLE_LABELS.values())
    box.setCurrentIndex(box.findData("points"))
    assert card.chosen_style() == "points"
    with qtbot.waitSignal(card.summarize_requested) as asked:
        card.summarize_button.click()
    assert asked.args == ["points"]


def test_the_card_has_a_real_icon_and_counts_in_words(qtbot: QtBot) -> None:
    from app.core.documents.summary_types import SummaryProgress, SummaryResult

    document = make_document("notes.txt", "text", [Section("lines 1-2", "Hello.\nWorld.")])
    card = DocumentCard(document, tokens=1)
    qtbot.addWidget(card)
    assert not card.icon_label.pixmap().isNull()  # the style's file icon, not an emoji glyph
    assert all(ord(c) < 0x2000 for c in card.title_label.text())
    assert "about 1 token ·" in card.details_label.text()
    card.set_progress(SummaryProgress("sections", 1, 1, None, 0))
    assert card.status_label.text() == "Reading: 1 of 1 part"
    card.set_progress(SummaryProgress("sections", 1, 3, None, 0))
    assert card.status_label.text() == "Reading: 1 of 3 parts"
    stopped = SummaryResult("notes.txt", "brief", "", "one pass", 1, 10, 2048, cancelled=True)
    card.set_finished(stopped)
    assert card.status_label.text().startswith("Stopped after 0 of 1 part.")
    done = SummaryResult("notes.txt", "brief", "Short.", "one pass", 1, 10, 2048)
    card.set_finished(done)
    assert "summary of 1 part in" in card.status_label.text()


def test_the_part_under_way_moves_the_bar_and_says_what_is_read_and_written(qtbot: QtBot) -> None:
    """A document of one part is one part for all its minutes: the bar and the line follow its reading and
    writing, with the time left; a longer one names the part."""
    from app.core.documents.summary_types import SummaryProgress

    card = DocumentCard(make_document("notes.txt", "text", [Section("lines 1-2", "Hello.\nWorld.")]))
    qtbot.addWidget(card)
    card.set_started()
    card.set_progress(SummaryProgress("final", 0, 1, None, 0, part_done=0.1, part_read=0.25))
    assert card.progress.value() == 10
    assert card.status_label.text() == "Writing the summary: 25% read"
    card.set_progress(SummaryProgress("final", 0, 1, 12.0, 0, part_done=0.6, words_written=23))
    assert card.progress.value() == 60
    assert card.status_label.text() == "Writing the summary: 23 words written, about 12 s left"
    card.set_progress(SummaryProgress("sections", 2, 5, 95.0, 1, part_done=0.5, part_read=0.45))
    assert card.progress.value() == 50
    assert card.status_label.text() == (
        "Reading: 2 of 5 parts · part 3: 45% read, about 1 min 35 s left (1 from earlier runs)"
    )


def test_a_file_being_read_shows_its_name_and_a_stop(qtbot: QtBot) -> None:
    card = ReadingCard("annual report.pdf")
    qtbot.addWidget(card)
    assert "annual report.pdf" in card.accessibleName()
    assert card.status_label.text() == "Reading…"
    assert card.progress.maximum() == 0  # busy: a read cannot say how far it is
    assert card.stop_button.accessibleName() == "Stop reading annual report.pdf"
    with qtbot.waitSignal(card.stop_requested):
        card.stop_button.click()
    card.set_indexing()
    assert card.status_label.text() == "Indexing its passages…"
