"""Issue 12, items 5, 6 and 11: a history that is locked, unwritable or in the wrong place, poisoned imports, and
escape sequences in titles. Real SQLite files, real second processes, real CLI runs."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.history.errors import HistoryFormatError, HistoryReadOnlyError, HistoryWriteError
from app.core.history.store import HistoryStore
from app.core.paths import app_paths
from tests.helpers.cli import llamadesk_command, run


def _conversation(
    uuid: str, title: str, created: Any = "2025-03-01T10:00:00+00:00", **extra: Any
) -> dict[str, Any]:
    message = {"role": "user", "content": f"hello from {title}", "created": "2025-03-01T10:00:00+00:00"}
    return {"uuid": uuid, "title": title, "mode": "chat", "model": "", "settings": {}, "created": created,
            "updated": "2025-03-01T10:00:00+00:00", "messages": [message], "documents": [], **extra}  # fmt: skip


def _export(conversations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"format": "llamadesk-history", "version": 1, "conversations": conversations}


def _holder(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process that holds the write lock (BEGIN IMMEDIATE) for ``seconds``, as a long import does."""
    code = (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        f"time.sleep({seconds})\n"
        "c.execute('ROLLBACK')\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


@pytest.fixture
def one_conversation() -> Iterator[Path]:
    with HistoryStore() as store:
        conversation = store.create_conversation()
        store.add_message(conversation.id, "user", "Plan a weekend in Lisbon")
    yield app_paths().history_db


# -- item 5: the history cannot be opened ----------------------------------------------------------------------


def test_list_reads_while_another_process_holds_the_write_lock(one_conversation: Path) -> None:
    started = time.monotonic()
    run("history", "list")
    unlocked = time.monotonic() - started  # the command's own start-up, which a busy machine stretches
    holder = _holder(one_conversation, 30)
    try:
        started = time.monotonic()
        result = run("history", "list")
        took = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    print(
        f"history list: {unlocked:.2f} s, and {took:.2f} s under a held write lock, exit {result.returncode}"
    )
    assert result.returncode == 0, result.stderr
    assert "Plan a weekend in Lisbon" in result.stdout
    # No wait for the lock: reading needs none. A wait would last BUSY_TIMEOUT_SECONDS (5 s).
    assert took < unlocked + 3


def test_a_write_waits_for_the_lock_then_says_so(one_conversation: Path) -> None:
    with HistoryStore() as store:
        holder = _holder(one_conversation, 9)
        try:
            started = time.monotonic()
            with pytest.raises(HistoryWriteError) as raised:
                store.create_conversation()
            waited = time.monotonic() - started
        finally:
            holder.kill()
            holder.wait()
        print(f"a write under a held lock waited {waited:.2f} s: {raised.value}")
        assert 4.5 < waited < 8
        assert "for over 5 seconds" in str(raised.value) and "try again" in str(raised.value)
        store.create_conversation()  # the lock released, writing works again


def test_an_immutable_file_opens_read_only_and_refuses_writes(one_conversation: Path) -> None:
    # Tests run as root, which ignores file modes; an immutable file (chattr +i) is one even root cannot write.
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(one_conversation)]).returncode:
        pytest.skip("chattr +i is not available here")
    try:
        with HistoryStore() as store:
            assert store.read_only
            assert (
                store.recovery_notice is not None and "new messages will not be kept" in store.recovery_notice
            )
            assert [c.title for c in store.list_conversations()] == ["Plan a weekend in Lisbon"]
            with pytest.raises(HistoryReadOnlyError, match="open read-only"):
                store.create_conversation()
        result = run("history", "list")
        assert result.returncode == 0 and "Plan a weekend in Lisbon" in result.stdout
        assert "open read-only" in result.stderr and "Traceback" not in result.stderr
    finally:
        subprocess.run(["chattr", "-i", str(one_conversation)], check=True)


def _read_only_mount(folder: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """``command`` run with ``folder`` bind-mounted read-only, in its own user and mount namespace."""
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, str(folder), *command],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_read_only_mount_opens_read_only_in_the_cli(one_conversation: Path) -> None:
    probe = _read_only_mount(one_conversation.parent, "true")
    if shutil.which("unshare") is None or probe.returncode:
        pytest.skip(f"a read-only bind mount is not possible here: {probe.stderr}")
    result = _read_only_mount(one_conversation.parent, *llamadesk_command("history", "list"))
    print(result.stderr)
    assert result.returncode == 0, result.stderr
    assert "Plan a weekend in Lisbon" in result.stdout
    assert "Read-only file system" in result.stderr and "new messages will not be kept" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_empty_read_only_folder_is_a_sentence(llamadesk_home: Path) -> None:
    folder = app_paths().history_db.parent
    folder.mkdir(parents=True)
    probe = _read_only_mount(folder, "true")
    if shutil.which("unshare") is None or probe.returncode:
        pytest.skip("a read-only bind mount is not possible here")
    result = _read_only_mount(folder, *llamadesk_command("history", "list"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot be created in" in result.stderr and "LLAMADESK_HOME" in result.stderr


@pytest.mark.parametrize("kind", ["folder", "fifo", "parent is a file"])
def test_the_wrong_kind_of_file_is_a_sentence(llamadesk_home: Path, kind: str) -> None:
    path = app_paths().history_db
    if kind == "parent is a file":
        path.parent.parent.mkdir(parents=True, exist_ok=True)
        path.parent.write_text("not a folder")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if kind == "folder" else __import__("os").mkfifo(path)
    result = run("history", "list", timeout=60)
    print(kind, "->", result.stderr.strip())
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert ("is a file, not a folder" if kind == "parent is a file" else "Move or rename it") in result.stderr


# -- item 6: poisoned imports --------------------------------------------------------------------------------


POISONED = [
    (
        "far future",
        _conversation("u-future", "far future", created="9999-12-31T23:59:59+00:00"),
        "out of range",
    ),
    ("far past", _conversation("u-past", "far past", created="0001-01-01T00:00:00"), "out of range"),
    (
        "huge count",
        _conversation(
            "u-huge",
            "huge count",
            messages=[
                {
                    "role": "user",
                    "content": "x",
                    "created": "2025-03-01T10:00:00+00:00",
                    "prompt_tokens": 10**30,
                }
            ],
        ),
        "prompt_tokens is out of range",
    ),
    (
        "huge in stats",
        _conversation("u-stats", "huge in stats", settings={"n": 10**30}),
        "too large to store",
    ),
    ("title a list", {**_conversation("u-list", "x"), "title": ["a"]}, "its title is a list, not text"),
    (
        "content a number",
        _conversation(
            "u-num",
            "content a number",
            messages=[{"role": "user", "content": 5, "created": "2025-03-01T10:00:00+00:00"}],
        ),
        "its content is a number, not text",
    ),
    ("unknown mode", _conversation("u-mode", "unknown mode", mode="wizard"), "its mode is 'wizard'"),
    (
        "deep settings",
        _conversation("u-deep", "deep settings", settings=json.loads('{"a":' * 200 + "1" + "}" * 200)),
        "nested more than 32 levels",
    ),
    ("time a number", _conversation("u-time", "time a number", created=17e11), "not an ISO 8601 time"),
    ("nan", _conversation("u-nan", "nan", settings={"t": float("nan")}), "not a number that can be stored"),
]


def test_an_import_refuses_each_poisoned_conversation_and_keeps_the_good_ones(llamadesk_home: Path) -> None:
    good = _conversation("u-good", "a good one")
    data = _export([c for _, c, _ in POISONED[:4]] + [good] + [c for _, c, _ in POISONED[4:]])
    file = llamadesk_home / "poisoned.json"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(data))
    result = run("history", "import", str(file))
    print(result.stderr)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"Imported 1 conversation; {len(POISONED)} refused" in result.stdout
    refusals = result.stderr.strip().splitlines()
    assert len(refusals) == len(POISONED)
    for line, (_, _, reason) in zip(refusals, POISONED, strict=True):
        assert reason in line, line
    for command in (["history", "list"], ["history", "export"], ["history", "export", "--format", "json"]):
        shown = run(*command)
        assert shown.returncode == 0 and "a good one" in shown.stdout, shown.stderr
    with HistoryStore() as store:
        [only] = store.list_conversations()
        assert store.get_conversation(only.id).title == "a good one"


def test_a_deeply_nested_or_huge_number_file_is_a_sentence(store: HistoryStore) -> None:
    for text, reason in [("[" * 100_000 + "]" * 100_000, "nested too deeply"), ("1" * 5000, "digits")]:
        with pytest.raises(HistoryFormatError, match=reason):
            store.import_json(text, "bad.json")


def test_a_stored_time_out_of_range_does_not_break_list_show_or_export(one_conversation: Path) -> None:
    connection = sqlite3.connect(one_conversation)
    with connection:
        connection.execute(
            "UPDATE conversations SET created_ms = ?, updated_ms = ?", (253402300799000 * 10, -62135596800000)
        )
        connection.execute("UPDATE messages SET created_ms = 'not a time'")
        connection.execute("UPDATE conversations SET mode = 'wizard'")
    connection.close()
    for command in (["history", "list"], ["history", "show", "1"], ["history", "export", "--format", "json"]):
        result = run(*command)
        assert result.returncode == 0, result.stderr
        assert "Plan a weekend in Lisbon" in result.stdout


def test_a_large_import_lets_another_process_write_between_its_batches(llamadesk_home: Path) -> None:
    count = 3000
    file = llamadesk_home / "big.json"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(_export([_conversation(f"u-{i}", f"imported {i}") for i in range(count)])))
    HistoryStore().close()  # created and migrated
    writer_code = (
        "import sys, time\n"
        "from app.core.history.store import HistoryStore\n"
        "s = HistoryStore()\n"
        "deadline = time.monotonic() + float(sys.argv[1])\n"
        "print('ready', flush=True)\n"
        "written = 0\n"
        "while time.monotonic() < deadline:\n"
        "    s.create_conversation(title='from the writer'); written += 1; time.sleep(0.05)\n"
        "print(written)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", writer_code, "30"], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    started = time.monotonic()
    result = run("history", "import", str(file))
    took = time.monotonic() - started
    writer.kill()
    writer.wait()
    assert result.returncode == 0, result.stderr
    assert f"Imported {count} conversations" in result.stdout
    with HistoryStore() as store:
        rows = store._read("SELECT id, title FROM conversations ORDER BY id")
    imported = [r["id"] for r in rows if r["title"].startswith("imported")]
    between = [
        r["id"] for r in rows if r["title"] == "from the writer" and imported[0] < r["id"] < imported[-1]
    ]
    print(
        f"import of {count} conversations: {took:.2f} s; writer rows committed between batches: {len(between)}"
    )
    assert between, "the writer never got the lock during the import"


# -- item 11: terminal escapes -------------------------------------------------------------------------------


def test_history_output_has_no_terminal_escapes(llamadesk_home: Path) -> None:
    hostile = "Lisbon \x1b]0;owned\x07 \x1b[31mred\x9b2J end"
    with HistoryStore() as store:
        conversation = store.create_conversation(title=hostile)
        store.add_message(conversation.id, "user", f"line one\n\tindented {hostile}")
    for command in (["history", "list"], ["history", "show", "1"], ["history", "search", "Lisbon"],
                    ["history", "export"], ["history", "export", "--format", "json"]):  # fmt: skip
        result = run(*command)
        assert result.returncode == 0, result.stderr
        for control in ("\x1b", "\x07", "\x9b"):
            assert control not in result.stdout + result.stderr, command
        assert "Lisbon" in result.stdout
    show = run("history", "show", "1").stdout
    assert "line one\n\tindented Lisbon ␛]0;owned␇" in show  # newlines and tabs kept, controls visible
    exported = json.loads(run("history", "export", "--format", "json").stdout)
    assert exported["conversations"][0]["title"] == " ".join(hostile.split())  # JSON keeps the text exactly
