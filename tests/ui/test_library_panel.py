"""The Library panel with real widgets, the real library database and the real embedding model: folders added
and indexed off the GUI thread with progress, cancelled with what was indexed kept, bad files with their
sentence, and libraries chosen per conversation, answering its questions with their sources."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot

from app.core.library.database import LibraryDatabase
from app.core.library.search import CombinedPassages
from app.core.paths import app_paths
from app.ui.library_jobs import LibraryThread, ThreadedLibraryPassages
from app.ui.library_panel import LibraryPanel
from app.ui.main_window import MainWindow
from app.ui.transcript.sources import sources_of
from tests.fixtures.documents import corrupt_pdf_bytes, pdf_bytes, travelogue_pages
from tests.helpers.window import open_window

pytestmark = pytest.mark.gui

INDEX_TIMEOUT_MS = 120_000
NOTES = {
    "pets.md": "# Pets\n\nOur feline dozes on the rug by the window most afternoons.\n",
    "money.md": "# Money\n\nThe deadline for filing the annual tax return is the first of May.\n",
    "parts.md": "# Parts\n\nReplacement filter part number XR-2207 fits the 2019 model of the heater.\n",
    "trips.md": "# Trips\n\nThe train to the coast leaves at seven and takes two hours.\n",
}


@pytest.fixture
def panel(qtbot: QtBot) -> Iterator[LibraryPanel]:
    db_path = app_paths().ensure().library_db
    thread = LibraryThread(db_path)
    shown = LibraryPanel(thread, db_path)
    qtbot.addWidget(shown)
    shown.resize(520, 640)
    shown.show()
    qtbot.waitUntil(lambda: shown.loaded, timeout=10_000)
    yield shown
    shown.shutdown()
    if shown.run is not None:
        shown.run.join(30)
    thread.shutdown()


def many_notes(folder: Path, count: int) -> Path:
    folder.mkdir()
    pages = travelogue_pages(count, sentences_per_page=12)
    for number, text in enumerate(pages):
        (folder / f"note-{number:03}.md").write_text(f"# Note {number}\n\n{text}\n")
    return folder


def stored_files(name: str) -> int:
    db = LibraryDatabase(app_paths().library_db)
    try:
        (count,) = db.connection.execute(
            "SELECT count(*) FROM files f JOIN libraries l ON l.id = f.library_id WHERE l.name = ?", (name,)
        ).fetchone()
    finally:
        db.close()
    return int(count)


def row_texts(panel: LibraryPanel) -> dict[str, str]:
    """Each library's second line, by its name."""
    return dict(row.text(0).split("\n", 1) for row in panel._rows())


class GapMeter:
    """The GUI thread's longest gap between ticks of a 10 ms timer: how long the window stopped answering."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.longest = 0.0
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        self.longest = max(self.longest, now - self.last)
        self.last = now

    def start(self) -> None:
        self.last = time.monotonic()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()


def test_adding_a_folder_indexes_it_with_progress_off_the_gui_thread(
    qtbot: QtBot,
    panel: LibraryPanel,
    tmp_path: Path,
    embedding_model_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = many_notes(tmp_path / "travels", 24)
    # Native file dialogs cannot be driven headless: only their answers are given.
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder))
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(embedding_model_path), "")
    )
    assert "No libraries yet" in panel.hint.text()
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    assert panel.add_form.isVisible() and panel.name_box.currentText() == "travels"
    assert "words alone" in panel.model_label.text()  # said before it is indexed that way
    qtbot.mouseClick(panel.model_button, Qt.MouseButton.LeftButton)
    assert embedding_model_path.name in panel.model_label.text()

    seen: list[str] = []
    meter = GapMeter()
    meter.start()
    qtbot.mouseClick(panel.index_button, Qt.MouseButton.LeftButton)
    assert panel.indexing and panel.progress_box.isVisible() and not panel.add_form.isVisible()
    assert panel.run is not None
    panel.run.signals.progress.connect(lambda _progress: seen.append(panel.progress_label.text()))
    qtbot.waitUntil(lambda: not panel.indexing, timeout=INDEX_TIMEOUT_MS)
    meter.stop()

    assert any("/24 files" in text and "passage" in text for text in seen), seen
    assert panel.last_report is not None and panel.last_report.added == 24
    assert not panel.progress_box.isVisible()
    assert 'Indexed "travels": 24 new' in panel.note.text()
    qtbot.waitUntil(lambda: "travels" in row_texts(panel), timeout=10_000)
    files, passages, search = row_texts(panel)["travels"].split(" · ")
    assert (files, search) == ("24 files", "words + meaning")  # no problems, so none said
    assert int(passages.split()[0]) >= 24
    qtbot.waitUntil(lambda: panel.files.topLevelItemCount() == 24, timeout=10_000)
    assert panel.files_title.text() == "Files of travels"
    # The window kept answering while the folder was read, embedded and written.
    assert meter.longest < 0.2, f"the GUI thread stalled for {meter.longest * 1000:.0f} ms"
    panel.grab().save("/tmp/library_panel.png")


def test_cancel_keeps_what_was_indexed_and_update_goes_on(
    qtbot: QtBot, panel: LibraryPanel, tmp_path: Path
) -> None:
    folder = many_notes(tmp_path / "journal", 60)
    panel.open_add_form([folder])
    qtbot.mouseClick(panel.index_button, Qt.MouseButton.LeftButton)
    assert panel.run is not None
    done: list[int] = []
    panel.run.signals.progress.connect(lambda progress: done.append(progress.files_done))
    qtbot.waitUntil(lambda: bool(done) and done[-1] >= 3, timeout=INDEX_TIMEOUT_MS)
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert "what was indexed is kept" in panel.progress_label.text()
    qtbot.waitUntil(lambda: not panel.indexing, timeout=INDEX_TIMEOUT_MS)
    report = panel.last_report
    assert report is not None and report.cancelled
    kept = stored_files("journal")
    assert 3 <= kept < 60 and kept == report.added
    assert "What was indexed is kept" in panel.note.text()
    qtbot.waitUntil(lambda: row_texts(panel).get("journal", "").startswith(f"{kept} files"), timeout=10_000)

    qtbot.mouseClick(panel.update_button, Qt.MouseButton.LeftButton)  # the selected library: journal
    qtbot.waitUntil(lambda: not panel.indexing, timeout=INDEX_TIMEOUT_MS)
    assert panel.last_report is not None and not panel.last_report.cancelled
    assert panel.last_report.added == 60 - kept and panel.last_report.unchanged == kept
    assert stored_files("journal") == 60


def test_a_bad_file_shows_its_sentence_and_the_rest_is_indexed(
    qtbot: QtBot, panel: LibraryPanel, tmp_path: Path
) -> None:
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "good.pdf").write_bytes(pdf_bytes(["The harbour town keeps its boats painted blue."]))
    (folder / "broken.pdf").write_bytes(corrupt_pdf_bytes(pdf_bytes(["Never read."])))
    # Dropped onto the panel, as from a file manager.
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    drop = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    # Qt delivers a drop only at the end of a real drag, which cannot run headless: the handlers get the events.
    enter = QDragEnterEvent(
        QPoint(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    panel.dragEnterEvent(enter)
    assert enter.isAccepted()
    panel.dropEvent(drop)
    assert panel.add_form.isVisible() and panel.name_box.currentText() == "papers"
    assert "words alone" in panel.model_label.text()
    qtbot.mouseClick(panel.index_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.indexing, timeout=INDEX_TIMEOUT_MS)
    report = panel.last_report
    assert report is not None and report.added == 1 and len(report.problems) == 1
    assert "searched by words alone" in panel.note.text()  # no embedding model: said once
    qtbot.waitUntil(lambda: panel.problem_sentences() != [], timeout=10_000)
    (sentence,) = panel.problem_sentences()
    assert sentence == report.problems[0].sentence and "broken.pdf" in sentence
    assert sentence.endswith(".") and "Traceback" not in sentence
    assert row_texts(panel)["papers"] == "2 files · 1 passage · 1 problem · words only"

    qtbot.mouseClick(panel.update_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.indexing, timeout=INDEX_TIMEOUT_MS)
    assert "searched by words alone" not in panel.note.text()  # once is enough
    panel.remove("papers")
    qtbot.waitUntil(lambda: "papers" not in row_texts(panel), timeout=10_000)
    assert stored_files("papers") == 0 and (folder / "good.pdf").exists()


@pytest.fixture
def window(qtbot: QtBot, model_path: Path) -> Iterator[MainWindow]:
    win = open_window(qtbot, model_path, sampling={"max_tokens": 24})
    yield win
    win.close()


def test_a_conversation_answers_from_the_libraries_it_chose_and_keeps_the_choice(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, embedding_model_path: Path
) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, text in NOTES.items():
        (folder / name).write_text(text)
    panel = window.libraries.panel
    window.libraries.action.trigger()
    assert window.libraries.dock.isVisible()
    panel.open_add_form([folder])
    panel.set_embedding_model(embedding_model_path)
    qtbot.mouseClick(panel.index_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.indexing and "notes" in row_texts(panel), timeout=INDEX_TIMEOUT_MS)

    # Ticked in a new chat, before its first message: kept once that message creates the conversation.
    assert window.conversation_id is None
    panel.set_ticked("notes", True)
    assert window.libraries.names == ["notes"]
    assert isinstance(window.conversation.session.documents, ThreadedLibraryPassages)
    window.input.setPlainText("Where does the cat sleep in the afternoon?")  # in other words than the note's
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    sources = window.conversation.session.sources
    assert sources and sources[0].document_name == "pets.md"
    assert Path(sources[0].path) == (folder / "pets.md").resolve()  # so a click opens the file
    answer = window.chat_view.messages[-1]
    shown = sources_of(answer)
    assert shown is not None and shown.references()[0] == 'pets.md, section "Pets"'
    qtbot.waitUntil(lambda: not window.bridge.is_generating, timeout=180_000)
    conversation_id = window.conversation_id
    assert conversation_id is not None
    assert window.store.get_conversation(conversation_id).settings["libraries"] == ["notes"]
    window.grab().save("/tmp/library_window.png")

    # Another conversation starts without it; the first one, reopened, has it again.
    window.new_conversation()
    assert window.libraries.names == [] and panel.chosen == []
    assert window.conversation.session.documents is None
    window.open_conversation(conversation_id)
    assert panel.chosen == ["notes"] and "answers from: notes" in panel.hint.text()
    qtbot.waitUntil(lambda: not window.documents.loading, timeout=10_000)
    source = window.conversation.session.documents
    assert isinstance(source, ThreadedLibraryPassages) and source.names == ("notes",)
    assert source.search("XR-2207")[0].passage.document_name == "parts.md"

    # With a document attached as well, both answer: one source of passages.
    attached = tmp_path / "heater.pdf"
    attached.write_bytes(pdf_bytes(["The heater's warranty lasts five years from the day of purchase."]))
    window.attach_documents([str(attached)])
    qtbot.waitUntil(lambda: len(window.documents.documents) == 1, timeout=20_000)
    combined = window.conversation.session.documents
    assert isinstance(combined, CombinedPassages)
    names = {hit.passage.document_name for hit in combined.search("heater warranty and filter part number")}
    assert {"heater.pdf", "parts.md"} <= names

    # Unticked: kept too.
    panel.set_ticked("notes", False)
    assert window.store.get_conversation(conversation_id).settings["libraries"] == []
    assert window.conversation.session.documents is window.documents.index
