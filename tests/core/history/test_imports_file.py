"""An export file read for import (``read_export_file``) and what an import did, as a sentence
(``import_outcome``): each file that cannot be an export is a sentence naming it, and who wrote each reply
survives the export and the import."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from app.core.history.errors import HistoryFormatError
from app.core.history.imports import import_outcome, read_export_file
from app.core.history.records import ImportResult
from app.core.history.store import HistoryStore
from app.core.llm.engine import ReplyStats

MODEL_A = "/models/model-a.gguf"


def test_a_json_export_is_read_back_whole_even_with_a_byte_order_mark(
    store: HistoryStore, tmp_path: Path
) -> None:
    chat = store.create_conversation(mode="chat", model=MODEL_A)
    store.add_message(chat.id, "user", "Bonjour 🌊")
    text = store.export_json()
    path = tmp_path / "export.json"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))  # as some editors save a file
    assert read_export_file(path) == text


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("chat.md", "# Anything\n", "chat.md is a Markdown export"),
        ("chat.txt", "# Tides\n\n- Mode: Chat\n", "chat.txt is a Markdown export"),  # whatever it is called
        ("binary.json", b"\xff\xfe\x00garbage", "binary.json could not be read (it is not text)"),
        ("missing.json", None, "There is no file"),
    ],
)
def test_a_file_that_cannot_be_an_export_is_a_sentence_naming_it(
    tmp_path: Path, name: str, content: str | bytes | None, expected: str
) -> None:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(HistoryFormatError) as caught:
        read_export_file(path)
    print(caught.value)
    assert expected in str(caught.value) and str(caught.value).endswith(".")


def test_the_markdown_export_of_the_app_itself_is_refused_with_what_to_import_instead(
    store: HistoryStore, tmp_path: Path
) -> None:
    chat = store.create_conversation(mode="chat", title="Notes")
    store.add_message(chat.id, "user", "Hello")
    path = tmp_path / "notes.md"
    path.write_text(store.export_markdown(), encoding="utf-8")
    with pytest.raises(HistoryFormatError, match="Import the JSON export"):
        read_export_file(path)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (ImportResult(imported=[4]), "Imported 1 conversation from f.json."),
        (ImportResult(imported=[4, 5], skipped=1), "Imported 2 conversations from f.json; 1 was already in"),
        (
            ImportResult(refused=["Conversation 2 was not imported: its id (uuid) is empty.", "Another."]),
            "Imported 0 conversations from f.json; 2 were refused. Conversation 2 was not imported: its id (uuid) "
            "is empty. (1 more in the log)",
        ),
    ],
)
def test_what_an_import_did_is_one_sentence(result: ImportResult, expected: str) -> None:
    assert import_outcome(result, "f.json").startswith(expected)


def test_the_model_that_wrote_each_reply_survives_export_and_import(
    store: HistoryStore, tmp_path: Path
) -> None:
    chat = store.create_conversation(mode="chat", model=MODEL_A)
    store.add_message(chat.id, "user", "Why are there tides?")
    store.add_message(chat.id, "assistant", "The moon.", stats=dataclasses.asdict(ReplyStats(model=MODEL_A)))
    path = tmp_path / "export.json"
    path.write_text(store.export_json(), encoding="utf-8")
    with HistoryStore(tmp_path / "elsewhere" / "history.sqlite3") as other:
        result = other.import_json(read_export_file(path), path.name)
        reply = other.messages(result.imported[0])[-1]
    assert reply.stats is not None and reply.stats["model"] == MODEL_A
    assert json.loads(path.read_text("utf-8"))["conversations"][0]["model"] == MODEL_A
