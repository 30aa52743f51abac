"""``llamadesk history`` and the saving of ``llamadesk chat``, as a person runs them: real processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.history.store import HistoryStore
from app.core.paths import app_paths
from tests.helpers.cli import run


@pytest.fixture
def filled() -> dict[str, int]:
    """A history with two conversations, written through the store as the window would."""
    with HistoryStore() as store:
        trip = store.create_conversation(mode="chat", model="/models/small.gguf")
        store.add_message(trip.id, "user", "Plan a weekend in Lisbon")
        store.add_message(trip.id, "assistant", "Walk the Alfama, then take tram 28 to Estrela.")
        code = store.create_conversation(mode="code")
        store.add_message(code.id, "user", "Reverse a list in Python")
        store.add_message(code.id, "assistant", "Use items[::-1] or items.reverse().", state="stopped")
    return {"trip": trip.id, "code": code.id}


def test_list_shows_groups_ids_and_titles(filled: dict[str, int]) -> None:
    result = run("history", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Today"
    assert str(filled["code"]) in lines[1] and "[code]" in lines[1] and "Reverse a list in Python" in lines[1]
    assert "Plan a weekend in Lisbon" in lines[2]


def test_list_of_an_empty_history_says_so_on_stderr() -> None:
    result = run("history", "list")
    assert result.returncode == 0
    assert result.stdout == ""
    assert "No saved conversations yet" in result.stderr


def test_show_prints_the_conversation_as_markdown(filled: dict[str, int]) -> None:
    result = run("history", "show", str(filled["trip"]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Plan a weekend in Lisbon\n")
    assert "Model: small.gguf" in result.stdout
    assert "tram 28" in result.stdout


def test_show_of_an_unknown_id_is_one_sentence_and_exit_1(filled: dict[str, int]) -> None:
    result = run("history", "show", "4242")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no conversation 4242" in result.stderr


def test_search_prints_hits_with_marked_words(filled: dict[str, int]) -> None:
    result = run("history", "search", "tram")
    assert result.returncode == 0, result.stderr
    assert str(filled["trip"]) in result.stdout
    assert "«tram»" in result.stdout
    assert run("history", "search", '"unbalanced (quote').returncode == 0


def test_export_json_then_import_into_another_home(
    filled: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exported = run("history", "export", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert [c["title"] for c in data["conversations"]] == [
        "Plan a weekend in Lisbon",
        "Reverse a list in Python",
    ]
    export_file = tmp_path / "export.json"
    export_file.write_text(exported.stdout, encoding="utf-8")

    monkeypatch.setenv("LLAMADESK_HOME", str(tmp_path / "second-home"))
    imported = run("history", "import", str(export_file))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "Imported 2 conversations."
    again = run("history", "import", str(export_file))
    assert again.stdout.strip() == "Imported 0 conversations; 2 already in the history and skipped."
    assert (
        json.loads(run("history", "export", "--format", "json").stdout)["conversations"]
        == data["conversations"]
    )


def test_export_one_conversation_as_markdown(filled: dict[str, int]) -> None:
    result = run("history", "export", str(filled["code"]), "--format", "md")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Reverse a list in Python\n")
    assert "(stopped)" in result.stdout
    assert "Lisbon" not in result.stdout


def test_import_of_a_bad_file_is_one_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "notes.json"
    bad.write_text("[1, 2, 3]")
    for target in (str(bad), str(tmp_path / "missing.json")):
        result = run("history", "import", target)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_damaged_history_is_reported_and_replaced() -> None:
    path = app_paths().history_db
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 100)
    result = run("history", "list")
    assert result.returncode == 0
    assert "moved it to" in result.stderr and ".corrupt-" in result.stderr


def test_chat_saves_its_conversation_unless_no_save(model_path: Path) -> None:
    question = "What is the capital of France?"
    chat = run("chat", "--model", str(model_path), "--temp", "0", "--max-tokens", "20", "-p", question)
    assert chat.returncode == 0, chat.stderr
    with HistoryStore() as store:
        [saved] = store.list_conversations()
        assert saved.title == question
        conversation = store.get_conversation(saved.id)
        assert conversation.model == str(model_path.resolve())
        assert conversation.settings["temperature"] == 0
        user, reply = store.messages(saved.id)
        assert (user.role, user.content) == ("user", question)
        assert (reply.role, reply.state) == ("assistant", "complete")
        # As printed: the whole reply, or its first telling when the repetition guard cut a loop.
        assert reply.content.strip() and chat.stdout.strip().startswith(reply.content.strip())
        assert reply.generated_tokens and reply.stats and reply.stats["finish_reason"] in ("stop", "length")

    unsaved = run("chat", "--model", str(model_path), "--max-tokens", "5", "--no-save", "-p", "Hello")
    assert unsaved.returncode == 0, unsaved.stderr
    with HistoryStore() as store:
        assert store.count_conversations() == 1


def test_bench_prints_its_figures() -> None:
    result = run("history", "bench", "--conversations", "40", "--messages", "400", "--runs", "2")
    assert result.returncode == 0, result.stderr
    assert "40 conversations, 400 messages" in result.stdout
    for label in (
        "list: first 200 + count",
        "list: all conversations",
        "search common word",
        "search rare word",
    ):
        assert label in result.stdout
    assert " ms" in result.stdout
    assert not list(app_paths().cache_dir.glob("history-bench-*"))  # the temporary history is gone


def test_show_and_export_follow_the_branch_on_screen() -> None:
    with HistoryStore() as store:
        conversation = store.create_conversation()
        first = store.add_message(conversation.id, "user", "Name a fruit.")
        store.add_message(conversation.id, "assistant", "A pear.")
        store.add_message(conversation.id, "user", "Name a vegetable.", parent_id=first.parent_id)
        store.add_message(conversation.id, "assistant", "A leek.")
    shown = run("history", "show", str(conversation.id))
    assert shown.returncode == 0, shown.stderr
    assert "A leek." in shown.stdout and "pear" not in shown.stdout
    assert "2 message(s) of other versions are in the JSON export" in shown.stdout
    exported = json.loads(run("history", "export", str(conversation.id), "--format", "json").stdout)
    assert len(exported["conversations"][0]["messages"]) == 4  # the whole tree

    with HistoryStore() as store:
        store.switch_branch(conversation.id, first.id)
    markdown = run("history", "export", str(conversation.id), "--format", "md").stdout
    assert "A pear." in markdown and "leek" not in markdown
