"""Import in the window: an export made by the real export code, imported through the sidebar's Import button
(or dropped on the list), shows up in the list, opens, and labels each reply with the model that wrote it as
recorded, never with the model loaded now; a damaged file is a sentence, and nothing changes.

Real widgets offscreen, real SQLite, the real model loaded as "the current model". The one part patched is
``QFileDialog.getOpenFileNames``: a native file dialog cannot be driven headless, so its return value (the
chosen file) is given.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog
from pytestqt.qtbot import QtBot

from app.core.history.recorder import ReplyRecorder
from app.core.history.store import HistoryStore
from app.core.llm.engine import ReplyStats
from app.core.settings import Settings
from app.ui.import_action import FILE_FILTER
from app.ui.main_window import MainWindow
from app.ui.transcript.chat_view import MessageWidget
from tests.helpers.window import open_window

pytestmark = pytest.mark.gui

MODEL_A = "/elsewhere/models/model-a-Q4_K_M.gguf"  # the model that wrote the replies, on another computer
TITLE = "Tides and the moon"


def _export_recorded_with_model_a(folder: Path) -> Path:
    """A conversation recorded in another history, as the window records one (a reply streamed through the
    recorder, its stats kept), exported by the real export code. Its second reply's model is taken out of the
    export, as an export from a version that did not record it has none."""
    with HistoryStore(folder / "other-computer" / "history.sqlite3") as other:
        conversation = other.create_conversation(mode="chat", model=MODEL_A, title=TITLE)
        for question, answer in (
            ("Why are there tides?", "The moon pulls the sea."),
            ("Twice a day?", "Yes."),
        ):
            other.add_message(conversation.id, "user", question)
            with ReplyRecorder(other, conversation.id) as recorder:
                recorder.append(answer)
                stats = ReplyStats(generated_tokens=6, tokens_per_second=20.0, model=MODEL_A)
                recorder.finish("complete", dataclasses.asdict(stats))
        export = json.loads(other.export_json([conversation.id]))
    replies = [m for m in export["conversations"][0]["messages"] if m["role"] == "assistant"]
    assert replies[0]["stats"]["model"] == MODEL_A  # the export does record who wrote a reply
    del replies[1]["stats"]["model"]
    path = folder / "tides.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    return path


def _choose_in_file_dialog(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """The file dialog's answer: ``path`` chosen (the dialog itself cannot be driven headless)."""
    monkeypatch.setattr(
        QFileDialog, "getOpenFileNames", staticmethod(lambda *_args, **_kwargs: ([str(path)], FILE_FILTER))
    )


def _author(message: MessageWidget) -> str:
    return message.author_label.text()


def _conversation_ids(store: HistoryStore) -> list[int]:
    return sorted(s.id for s in store.list_conversations(None, limit=1000))


@pytest.fixture
def window(qtbot: QtBot) -> Iterator[MainWindow]:
    """A window with no model loaded, for what does not need one."""
    win = MainWindow(settings=Settings(), store=HistoryStore(), open_default_model=False)
    qtbot.addWidget(win)
    win.show()
    win.activateWindow()
    qtbot.waitExposed(win)
    yield win
    win.close()


def test_an_imported_reply_is_labelled_with_its_recorded_model_not_the_current_one(
    qtbot: QtBot, model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = _export_recorded_with_model_a(tmp_path)
    window = open_window(qtbot, model_path)  # model B, the one loaded now
    current = window.bridge.model
    assert current is not None
    model_b = current.display_name
    _choose_in_file_dialog(monkeypatch, export)

    qtbot.mouseClick(window.sidebar.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.chat_view.messages) == 4, timeout=10_000)

    conversation_id = window.conversation_id
    assert conversation_id is not None
    row = window.sidebar.row_of(conversation_id)
    assert row is not None and row.text() == TITLE and row.isSelected()  # in the list, selected
    banner = window.banner.label.text()
    print("banner:", banner)
    assert window.banner.isVisible() and "Imported 1 conversation from tides.json" in banner
    replies = [m for m in window.chat_view.messages if m.role == "assistant"]
    authors = [_author(m) for m in replies]
    print("model loaded now:", model_b, "| replies labelled:", authors)
    assert "model-a-Q4_K_M" in authors[0]  # as recorded
    assert "Unknown model" in authors[1]  # not recorded: not guessed
    assert all(model_b not in author for author in authors)
    assert window.sidebar.importer.action.isEnabled()  # ready for the next file
    window.close()


def test_a_corrupt_file_is_a_sentence_and_changes_nothing(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = window.store.create_conversation(mode="chat", title="Kept as it was")
    window.store.add_message(kept.id, "user", "Hello")
    window.sidebar.refresh()
    window.open_conversation(kept.id)
    qtbot.waitUntil(lambda: len(window.chat_view.messages) == 1, timeout=5_000)
    before = _conversation_ids(window.store)
    corrupt = tmp_path / "history.json"
    corrupt.write_text('{"format": "llamadesk-history", "version": 2, "conversations": [{"uuid": ', "utf-8")
    _choose_in_file_dialog(monkeypatch, corrupt)

    qtbot.mouseClick(window.sidebar.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=10_000)

    sentence = window.banner.label.text()
    print("banner:", sentence)
    assert sentence.startswith("Nothing was imported from history.json; your conversations are as they were.")
    assert "history.json is not a LlamaDesk history export" in sentence and "Traceback" not in sentence
    assert _conversation_ids(window.store) == before
    assert window.conversation_id == kept.id and len(window.chat_view.messages) == 1
    assert window.sidebar.importer.action.isEnabled()


def test_of_two_files_chosen_the_good_one_is_imported_and_the_bad_one_named(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _export_recorded_with_model_a(tmp_path)
    bad = tmp_path / "damaged.json"
    bad.write_text('{"format": "llamadesk-history", "version": 2}', encoding="utf-8")  # no conversations
    monkeypatch.setattr(  # the file dialog's answer: both files chosen
        QFileDialog,
        "getOpenFileNames",
        staticmethod(lambda *_args, **_kwargs: ([str(bad), str(good)], FILE_FILTER)),
    )

    window.sidebar.importer.action.trigger()
    qtbot.waitUntil(lambda: len(window.chat_view.messages) == 4, timeout=10_000)

    sentence = window.banner.label.text()
    print("banner:", sentence)
    assert "Nothing was imported from damaged.json" in sentence and "damaged.json is damaged" in sentence
    assert "Imported 1 conversation from tides.json" in sentence
    assert [s.title for s in window.store.list_conversations(None, limit=10)] == [TITLE]


def test_a_markdown_export_is_refused_with_what_to_import_instead(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = window.store.create_conversation(mode="chat", title="Read me")
    window.store.add_message(chat.id, "user", "Hello")
    markdown = tmp_path / "read-me.md"
    markdown.write_text(window.store.export_markdown([chat.id]), encoding="utf-8")
    before = _conversation_ids(window.store)
    _choose_in_file_dialog(monkeypatch, markdown)

    window.sidebar.importer.action.trigger()  # the same action as the right-click menu's Import
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=10_000)

    sentence = window.banner.label.text()
    print("banner:", sentence)
    assert "read-me.md is a Markdown export" in sentence and "JSON" in sentence
    assert _conversation_ids(window.store) == before


def test_the_import_action_is_offered_in_the_lists_right_click_menu(window: MainWindow) -> None:
    chat = window.store.create_conversation(mode="chat", title="Any")
    menu = window.sidebar.context_menu(chat.id)
    labels = [action.text() for action in menu.actions()]
    menu.deleteLater()
    print("menu:", labels)
    assert "Import conversations…" in labels and "Export as JSON…" in labels


def _drag(data: QMimeData, path: Path) -> tuple[QDragEnterEvent, QDropEvent]:
    """A drag of ``path`` entering the list and dropped on it (``data``: kept by the caller while the events
    are used, as a drag keeps its data)."""
    data.setUrls([QUrl.fromLocalFile(str(path))])
    where = QPointF(20, 20)
    buttons, keys = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(where.toPoint(), Qt.DropAction.CopyAction, data, buttons, keys)
    drop = QDropEvent(where, Qt.DropAction.CopyAction, data, buttons, keys)
    enter.setAccepted(False)
    drop.setAccepted(False)
    return enter, drop


def test_an_export_dropped_on_the_list_is_imported_and_a_document_is_left_to_the_window(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    export = _export_recorded_with_model_a(tmp_path)
    viewport = window.sidebar.list.viewport()
    document = tmp_path / "notes.txt"
    document.write_text("Not an export.", encoding="utf-8")
    document_data, export_data = QMimeData(), QMimeData()
    enter, _drop = _drag(document_data, document)
    QApplication.sendEvent(viewport, enter)
    assert not window.sidebar.importer.running  # not the list's: the window attaches documents

    enter, drop = _drag(export_data, export)
    QApplication.sendEvent(viewport, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(viewport, drop)
    assert drop.isAccepted()
    qtbot.waitUntil(lambda: len(window.chat_view.messages) == 4, timeout=10_000)
    row = window.sidebar.row_of(window.conversation_id or 0)
    assert row is not None and row.text() == TITLE and row.isSelected()
    assert "Imported 1 conversation" in window.banner.label.text()
