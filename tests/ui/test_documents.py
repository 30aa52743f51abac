"""Documents dropped onto the real window: a card, a summary with progress, questions answered from pages."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.history.store import HistoryStore
from app.core.modes import Mode
from app.ui.document_card import DocumentCard, ReadingCard
from app.ui.main_window import MainWindow
from app.ui.transcript.sources import sources_of
from tests.fixtures.documents import (
    build_pdf,
    build_slow_pdf,
    corrupt_pdf_bytes,
    pdf_bytes,
    travelogue_pages,
)
from tests.helpers.window import open_window, press_escape

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot: QtBot, model_path: Path) -> Iterator[MainWindow]:
    win = open_window(qtbot, model_path, sampling={"max_tokens": 96})
    yield win
    win.close()


def cards(window: MainWindow) -> list[DocumentCard]:
    return [entry.card for entry in window.documents.documents.values()]


def test_dropped_pdf_is_summarized_with_progress_and_kept(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    pages = travelogue_pages(3)
    pdf = build_pdf(tmp_path / "journey.pdf", pages)
    progress: list[object] = []
    window.documents.summary_signals.text.connect(lambda _run, text: progress.append(text))
    window.set_mode(Mode.SUMMARIZE)  # Summarize mode summarizes what is dropped
    window.handle_dropped_files([str(pdf)])
    qtbot.waitUntil(lambda: len(cards(window)) == 1, timeout=10_000)
    assert window.mode == Mode.SUMMARIZE
    card = cards(window)[0]
    assert "3 pages" in card.details_label.text()
    qtbot.waitUntil(lambda: not window.documents.summarizing, timeout=120_000)
    assert card.progress.value() == 100
    assert "summary of" in card.status_label.text()
    assert window.conversation_id is not None
    stored = window.store.documents_for(window.conversation_id)
    assert [d.name for d in stored] == ["journey.pdf"]
    # What the model wrote streamed into the chat and was kept, whatever its words; a model that wrote nothing
    # (Gemma 3 270M, a base model, may end at once) leaves no empty message behind.
    written = "".join(p for p in progress if isinstance(p, str)).strip()
    replies = [m for m in window.chat_view.messages if m.role == "assistant"]
    if written:
        (summary,) = replies
        assert summary.text == written and stored[0].summary == written
        assert window.store.messages(window.conversation_id)[-1].content == written
    else:
        assert replies == [] and not stored[0].summary


def test_attached_in_chat_mode_a_document_is_asked_about_and_the_answer_shows_its_sources(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    pages = [
        "The harbour town keeps its boats painted blue. Fishing starts before dawn.",
        "The lighthouse keeper is named Marguerite Olsen. She has kept the light for thirty years.",
        "In winter the ferry stops running and the town is quiet.",
    ]
    path = tmp_path / "town.pdf"
    path.write_bytes(pdf_bytes(pages))
    assert window.mode == Mode.CHAT
    window.attach_documents([str(path)])
    qtbot.waitUntil(lambda: len(cards(window)) == 1, timeout=10_000)
    # Attached, not summarized, and still in Chat mode; the card offers Summarize.
    card = cards(window)[0]
    assert window.mode == Mode.CHAT and not window.documents.summarizing and not window.bridge.is_busy
    assert card.summarize_button.isEnabled() and card.summarize_button.text() == "Summarize"
    assert "Ask questions" in card.status_label.text()
    assert window.chat_view.messages == []

    window.input.setPlainText("What is the name of the lighthouse keeper?")
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    question_turn = window.conversation.engine_messages()[-1]["content"]
    assert "[town.pdf]" in question_turn and "Marguerite Olsen" in question_turn
    assert "page" not in question_turn.lower()  # no page numbers for the model to cite, or to invent
    answer = window.chat_view.messages[-1]
    panel = sources_of(answer)
    assert panel is not None and "town.pdf, page 2" in panel.references()  # shown while it is written
    qtbot.waitUntil(lambda: not window.bridge.is_generating, timeout=180_000)
    assert answer.state == "complete"
    panel.links.linkActivated.emit(f"source:{panel.references().index('town.pdf, page 2')}")
    assert "Marguerite Olsen" in panel.passage_text.text()

    # Stored with the reply: back when the conversation is reopened, and in the Markdown export.
    conversation_id = window.conversation_id
    assert conversation_id is not None
    window.new_conversation()
    window.open_conversation(conversation_id)
    qtbot.waitUntil(lambda: len(window.chat_view.messages) == 2, timeout=10_000)
    reopened = sources_of(window.chat_view.messages[-1])
    assert reopened is not None and reopened.references() == panel.references()
    exported = window.store.export_markdown([conversation_id])
    assert "Sources:" in exported and "- town.pdf, page 2: “The lighthouse keeper is named" in exported


def test_bad_documents_get_their_sentence(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(corrupt_pdf_bytes(pdf_bytes(["Some text on a page."])))
    window.handle_dropped_files([str(broken)])
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=5_000)
    assert "broken.pdf" in window.banner.label.text()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    window.banner.hide()
    window.handle_dropped_files([str(empty)])
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=5_000)
    assert "empty" in window.banner.label.text()
    assert cards(window) == []


def test_stopping_a_summary_keeps_the_finished_parts(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    pdf = build_pdf(tmp_path / "long.pdf", travelogue_pages(24))
    window.set_mode(Mode.SUMMARIZE)
    window.attach_documents([str(pdf)])
    qtbot.waitUntil(lambda: len(cards(window)) == 1, timeout=10_000)
    card = cards(window)[0]
    qtbot.waitUntil(lambda: "parts" in card.status_label.text(), timeout=120_000)  # under way
    press_escape(qtbot, window)
    qtbot.waitUntil(lambda: not window.documents.summarizing, timeout=5_000)
    assert "Stopped after" in card.status_label.text()
    assert card.summarize_button.isEnabled()


def test_documents_dropped_together_are_all_indexed_and_reopen_with_the_conversation(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    harbour = tmp_path / "harbour.txt"
    harbour.write_text("The harbour master is called Ingrid Halvorsen and keeps a red boat.\n")
    mill = tmp_path / "mill.txt"
    mill.write_text("The old mill grinds barley every Thursday, powered by the river Tarn.\n")
    window.attach_documents([str(harbour), str(mill), str(harbour)])  # the same file twice
    qtbot.waitUntil(lambda: len(cards(window)) == 2, timeout=20_000)
    qtbot.waitUntil(lambda: not window.documents.summarizing and not window.bridge.is_busy, timeout=120_000)
    conversation_id = window.conversation_id
    assert conversation_id is not None
    # Attaching in Chat mode stays in Chat mode; the conversation is stored, selected in the list.
    assert window.mode == Mode.CHAT and window.chat_view.messages == []
    assert window.store.get_conversation(conversation_id).mode == Mode.CHAT.value
    assert window.sidebar.current_id == conversation_id
    assert sorted(d.name for d in window.store.documents_for(conversation_id)) == ["harbour.txt", "mill.txt"]
    session = window.conversation.session
    session.add_user_message(
        "Who is the harbour master?", model="m", preset=window.preset(), context_size=2048
    )
    assert "Ingrid Halvorsen" in window.conversation.engine_messages()[-1]["content"]
    session.add_user_message(
        "Which river powers the mill?", model="m", preset=window.preset(), context_size=2048
    )
    assert "Tarn" in window.conversation.engine_messages()[-1]["content"]

    # Reopened, the documents come back (read off the GUI thread); a question waits for them, kept in the box.
    window.new_conversation()
    window.open_conversation(conversation_id)
    assert window.documents.loading
    window.input.setPlainText("Which river powers the mill?")
    window.send()
    assert "still being read" in window.banner.label.text()
    assert window.input.toPlainText() == "Which river powers the mill?"
    qtbot.waitUntil(lambda: len(cards(window)) == 2, timeout=20_000)
    assert not window.documents.loading
    assert "Tarn" in window.conversation.engine_messages()[-1]["content"]


def test_reading_a_document_stops_on_its_card_or_esc_and_the_file_attaches_later(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    slow = build_slow_pdf(tmp_path / "slow.pdf", text_runs=30_000)  # seconds to read

    def reading_cards() -> list[ReadingCard]:
        return window.chat_view.findChildren(ReadingCard)

    def reader_at_work() -> bool:
        return bool(multiprocessing.active_children())

    window.attach_documents([str(slow)])
    qtbot.waitUntil(lambda: len(reading_cards()) == 1, timeout=5_000)
    card = reading_cards()[0]
    assert card.status_label.text() == "Reading…" and window.documents.reading
    qtbot.waitUntil(reader_at_work, timeout=60_000)
    qtbot.mouseClick(card.stop_button, Qt.MouseButton.LeftButton)
    assert reading_cards() == [] and not window.documents.reading  # the card goes at once
    assert "Stopped reading slow.pdf; it was not attached." in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not reader_at_work(), timeout=10_000)  # the reader process is killed
    assert cards(window) == [] and window.conversation_id is None  # nothing stored, not even a conversation

    window.attach_documents([str(slow)])
    qtbot.waitUntil(reader_at_work, timeout=60_000)
    press_escape(qtbot, window)
    assert reading_cards() == []
    qtbot.waitUntil(lambda: not reader_at_work(), timeout=10_000)
    assert cards(window) == [] and not window.banner.isVisible()  # stopping is no failure

    window.attach_documents([str(slow)])  # dropped, then the person leaves for another conversation
    qtbot.waitUntil(reader_at_work, timeout=60_000)
    window.new_conversation()
    assert reading_cards() == []
    qtbot.waitUntil(lambda: not reader_at_work(), timeout=10_000)

    window.attach_documents([str(slow)])  # left to finish, the same file is attached as ever
    qtbot.waitUntil(lambda: len(cards(window)) == 1, timeout=180_000)
    assert reading_cards() == [] and not window.documents.reading
    assert window.conversation_id is not None
    assert [d.name for d in window.store.documents_for(window.conversation_id)] == ["slow.pdf"]


def test_stopped_while_it_is_stored_a_document_is_not_attached(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    note = tmp_path / "ferry.txt"
    note.write_text("The ferry to the island leaves at seven every morning.\n")

    def reading_card() -> ReadingCard | None:
        found = window.chat_view.findChildren(ReadingCard)
        return found[0] if found else None

    # Read, then held back from storing: the storing thread is busy with a job that waits for the gate.
    gate = threading.Event()
    window.documents._pool.start(gate.wait)
    window.attach_documents([str(note)])
    qtbot.waitUntil(lambda: (card := reading_card()) is not None and "Indexing" in card.status_label.text())
    card = reading_card()
    assert card is not None
    qtbot.mouseClick(card.stop_button, Qt.MouseButton.LeftButton)
    gate.set()
    qtbot.waitUntil(lambda: window.documents._pool.activeThreadCount() == 0, timeout=10_000)
    conversation_id = window.conversation_id
    assert conversation_id is not None and window.store.documents_for(conversation_id) == []
    assert reading_card() is None and cards(window) == []

    # Stored already when Stop is pressed (its answer not yet delivered): taken out again. The storing thread
    # is held again, so that "Indexing" lasts until the test lets it go.
    held = threading.Event()
    window.documents._pool.start(held.wait)
    window.attach_documents([str(note)])
    qtbot.waitUntil(lambda: (card := reading_card()) is not None and "Indexing" in card.status_label.text())
    card = reading_card()
    assert card is not None
    held.set()
    with HistoryStore(window.store.path) as other:  # the GUI thread waits here, so no answer is delivered
        deadline = time.monotonic() + 30
        while not other.documents_for(conversation_id):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    card.stop_button.click()
    qtbot.waitUntil(lambda: window.documents._pool.activeThreadCount() == 0, timeout=10_000)
    qtbot.waitUntil(lambda: window.store.documents_for(conversation_id) == [], timeout=10_000)
    assert cards(window) == [] and not window.banner.isVisible()


def test_a_finished_summary_is_labelled_with_the_model_that_wrote_it(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    note = tmp_path / "note.txt"
    note.write_text("The bakery on Mill Lane opens at six and sells rye bread until noon.\n")
    window.set_mode(Mode.SUMMARIZE)
    window.attach_documents([str(note)])
    qtbot.waitUntil(lambda: len(cards(window)) == 1, timeout=20_000)
    qtbot.waitUntil(lambda: not window.documents.summarizing and not window.bridge.is_busy, timeout=180_000)
    conversation_id = window.conversation_id
    assert conversation_id is not None
    model = window.bridge.model
    assert model is not None
    [summary] = [m for m in window.store.messages(conversation_id) if m.role == "assistant"]
    assert summary.stats["summary_of"] == "note.txt"
    assert (summary.stats["engine"], summary.stats["model"]) == ("local", str(model.path))
    window.new_conversation()
    window.open_conversation(conversation_id)
    qtbot.waitUntil(lambda: bool(window.chat_view.messages), timeout=10_000)
    author = window.chat_view.messages[-1].author_label.text()
    assert Path(str(model.path)).stem in author  # not "Unknown model"
