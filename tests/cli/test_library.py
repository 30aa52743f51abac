"""``llamadesk library``, as a person runs it: real processes, a real embedding model, a real kill -9."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from app.core.paths import app_paths
from tests.helpers.cli import llamadesk_command, run


def write_notes(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        (folder / f"note{number:03}.md").write_text(
            f"# Note {number}\n\nThe meeting about project {number} moved to room {100 + number}.\n"
        )


def house_notes(folder: Path) -> Path:
    """Two notes, one holding the fact the library questions ask about (the boiler's pressure)."""
    folder.mkdir()
    (folder / "boiler.md").write_text("# Boiler\n\nThe boiler pressure should read 1.5 bar when cold.\n")
    (folder / "garden.md").write_text("# Garden\n\nPrune the quince tree in late winter.\n")
    return folder


def test_add_list_search_and_remove(tmp_path: Path, embedding_model_path: Path) -> None:
    folder = tmp_path / "notes"
    write_notes(folder, 5)
    (folder / "pets.md").write_text("# Pets\n\nOur feline dozes on the rug by the window.\n")

    added = run(
        "library", "add", str(folder), "--name", "work", "--embedding-model", str(embedding_model_path)
    )
    assert added.returncode == 0, added.stderr
    assert 'Indexed library "work": 6 new' in added.stderr

    listed = run("library", "list")
    assert listed.stdout.startswith("work: 6 files, 6 passages; search by words and meaning")
    assert str(folder) in listed.stdout

    found = run("library", "search", "work", "where", "does", "the", "cat", "sleep", "--top", "2", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert len(hits) == 2
    assert set(hits[0]) == {"path", "label", "page", "score", "text"}
    assert Path(hits[0]["path"]).name == "pets.md" and hits[0]["label"] == 'section "Pets"'
    assert hits[0]["score"] >= hits[1]["score"]

    removed = run("library", "remove", "work")
    assert removed.returncode == 0
    missing = run("library", "search", "work", "cat")
    assert missing.returncode == 1 and 'There is no library named "work"' in missing.stderr
    assert "Traceback" not in missing.stderr


def test_without_an_embedding_model_it_says_words_alone_once(tmp_path: Path) -> None:
    write_notes(tmp_path / "notes", 2)
    added = run("library", "add", str(tmp_path / "notes"), "--name", "plain")
    assert added.returncode == 0, added.stderr
    assert added.stderr.count("searched by words alone") == 1
    found = run("library", "search", "plain", "room 101")
    assert "note001.md" in found.stdout.splitlines()[0]


def test_kill_9_mid_index_keeps_whole_files_and_the_next_add_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    write_notes(folder, 60)
    database = app_paths().library_db
    child = subprocess.Popen(
        llamadesk_command("library", "add", str(folder), "--name", "many"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    committed = 0
    deadline = time.monotonic() + 120
    while committed < 3 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
        try:
            with sqlite3.connect(database, timeout=1) as db:
                committed = db.execute("SELECT count(*) FROM files").fetchone()[0]
        except sqlite3.Error:
            committed = 0
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    with sqlite3.connect(database) as db:
        files_then = db.execute("SELECT count(*) FROM files").fetchone()[0]
        assert db.execute("SELECT count(*) FROM passages").fetchone()[0] == files_then  # one passage per note

    resumed = run("library", "add", "--name", "many")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{60 - files_then} new" in resumed.stderr and f"{files_then} unchanged" in resumed.stderr
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM passages").fetchone()[0] == 60
        assert db.execute("SELECT count(*) FROM passage_text").fetchone()[0] == 60
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_chat_answers_from_a_library_and_names_its_sources(
    tmp_path: Path, embedding_model_path: Path, model_path: Path
) -> None:
    folder = house_notes(tmp_path / "house")
    added = run(
        "library", "add", str(folder), "--name", "house", "--embedding-model", str(embedding_model_path)
    )
    assert added.returncode == 0, added.stderr

    chat = run(
        "chat", "--model", str(model_path), "--library", "house", "--no-save", "--max-tokens", "24",
        "-p", "What should the boiler pressure read?",
    )  # fmt: skip
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip()
    sources = [line for line in chat.stderr.splitlines() if line.startswith("Sources: ")]
    assert sources and f'{folder / "boiler.md"}, section "Boiler"' in sources[0]

    unknown = run("chat", "--model", str(model_path), "--library", "nope", "--no-save", "-p", "Hi")
    assert unknown.returncode == 1 and 'There is no library named "nope"' in unknown.stderr


def place_as_the_recommended_embedding_model(embedding_model_path: Path) -> Path:
    """The test embedding model, put where `llamadesk models download nomic-embed-text-v1.5` installs the
    recommended one (the Hub cannot be reached here; the pinned download itself is tested against the fake hub)."""
    from app.core.models.catalog import load_embedding_catalog
    from app.core.models.inventory import embedding_model_path as installed_at

    target = installed_at(load_embedding_catalog()[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(embedding_model_path)
    return target


def test_without_an_embedding_model_the_library_says_how_to_get_the_recommended_one(tmp_path: Path) -> None:
    folder = house_notes(tmp_path / "house")
    added = run("library", "add", str(folder), "--name", "house")
    assert added.returncode == 0, added.stderr
    assert added.stderr.count("searched by words alone") == 1
    assert "llamadesk models download nomic-embed-text-v1.5" in added.stderr

    listed = run("models", "list")
    assert "For libraries (search by meaning): nomic-embed-text v1.5" in listed.stdout
    assert "get it with: llamadesk models download nomic-embed-text-v1.5" in listed.stdout


def test_the_recommended_embedding_model_once_downloaded_is_each_new_library_s(
    tmp_path: Path, embedding_model_path: Path
) -> None:
    installed = place_as_the_recommended_embedding_model(embedding_model_path)
    folder = house_notes(tmp_path / "house")
    added = run("library", "add", str(folder), "--name", "house")
    assert added.returncode == 0, added.stderr
    assert "the recommended embedding model" in added.stderr
    assert "searched by words alone" not in added.stderr
    assert run("library", "list").stdout.startswith("house: 2 files, 2 passages; search by words and meaning")

    listed = json.loads(run("models", "list", "--json").stdout)
    (embedding,) = listed["embedding_models"]
    assert embedding["installed"] and embedding["path"] == str(installed)
    installed_ids = run("models", "installed").stdout
    assert "nomic-embed-text" in installed_ids  # listed with the models, so it can be removed

    from app.core.models.inventory import chat_models, default_model

    assert all(not model.is_embedding for model in chat_models())  # never offered for a conversation
    assert default_model() != installed


def test_a_file_that_is_no_embedding_model_is_refused_and_the_library_goes_on(
    tmp_path: Path, model_path: Path
) -> None:
    folder = house_notes(tmp_path / "house")
    assert run("library", "add", str(folder), "--name", "house").returncode == 0
    for wrong in (folder / "boiler.md", model_path):  # not a GGUF; a chat model, which pools nothing
        refused = run("library", "add", str(folder), "--name", "house", "--embedding-model", str(wrong))
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert wrong.name in refused.stderr
    again = run("library", "add", str(folder), "--name", "house")
    assert again.returncode == 0, again.stderr
    assert "2 unchanged" in again.stderr  # the wrong choices stored nothing: not even a re-read
    assert "search by words only" in run("library", "list").stdout
