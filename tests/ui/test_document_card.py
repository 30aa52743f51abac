"""The document card: its style menu, and Qt's own ``style()`` left alone."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QStyle
from pytestqt.qtbot import QtBot

from app.core.documents.document import Section, make_document
from app.core.documents.summary_types import STYLE_LABELS
from app.ui.document_card import DocumentCard

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
