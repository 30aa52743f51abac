"""Replies saved while they stream: at most once a second, kept through failures, crashes and other processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.history.store import HistoryStore
from tests.fixtures.history_crash_child import EARLIER_TURNS
from tests.helpers.history import on_disk

ROOT = Path(__file__).resolve().parents[3]


class FakeClock:
    """Stands in for time.monotonic so the once-a-second flush can be tested without sleeping."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_reply_row_is_rewritten_at_most_once_a_second(store: HistoryStore) -> None:
    clock = FakeClock()
    conversation = store.create_conversation()
    recorder = store.begin_reply(conversation.id, clock=clock)
    recorder.append("")
    assert on_disk(store.path, "SELECT count(*) FROM messages") == [(0,)]  # no row before the first text

    recorder.append("Once")
    assert on_disk(store.path, "SELECT content, state FROM messages") == [("Once", "streaming")]
    clock.now += 0.5
    recorder.append(" upon")
    assert on_disk(store.path, "SELECT content FROM messages") == [("Once",)]  # not yet a second
    clock.now += 0.5
    recorder.append(" a time")
    assert on_disk(store.path, "SELECT content FROM messages") == [("Once upon a time",)]
    assert recorder.writes == 2
    clock.now += 0.2
    recorder.append(",")
    message = recorder.finish("stopped", {"generated_tokens": 5})
    assert message is not None
    assert on_disk(store.path, "SELECT content, state, generated_tokens FROM messages") == [
        ("Once upon a time,", "stopped", 5)
    ]


def test_reply_stopped_before_its_first_word_leaves_no_row(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    assert store.begin_reply(conversation.id).finish("stopped") is None
    assert store.messages(conversation.id) == []


def test_reply_that_fails_midway_is_kept_as_interrupted(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    with pytest.raises(RuntimeError), store.begin_reply(conversation.id) as recorder:
        recorder.append("Half a")
        raise RuntimeError("the engine failed")
    [message] = store.messages(conversation.id)
    assert (message.content, message.state) == ("Half a", "interrupted")


def test_reply_left_streaming_is_marked_interrupted_on_open(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "Tell me a story.")
    recorder = store.begin_reply(conversation.id)
    recorder.append("Once upon")
    store.close()  # the process ends without finishing the reply

    reopened = HistoryStore()
    _user, reply = reopened.messages(conversation.id)
    assert (reply.content, reply.state) == ("Once upon", "interrupted")
    reopened.add_message(conversation.id, "user", "Go on.")  # and the conversation can go on
    assert [m["role"] for m in reopened.chat_messages(conversation.id)] == ["user", "assistant", "user"]


def test_a_live_reply_taken_for_dead_by_another_process_recovers(store: HistoryStore) -> None:
    clock = FakeClock()
    conversation = store.create_conversation()
    recorder = store.begin_reply(conversation.id, clock=clock)
    recorder.append("Still")
    # A second process opens the history meanwhile (one in this process knows the reply is live).
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from app.core.history.store import HistoryStore; HistoryStore({str(store.path)!r}).close()",
        ],
        cwd=ROOT,
        check=True,
    )
    assert on_disk(store.path, "SELECT state FROM messages") == [("interrupted",)]
    clock.now += 1
    recorder.append(" going")
    assert on_disk(store.path, "SELECT state FROM messages") == [("streaming",)]
    recorder.finish()
    assert on_disk(store.path, "SELECT content, state FROM messages") == [("Still going", "complete")]


def test_reply_killed_mid_stream_survives_with_what_was_flushed(model_path: Path, tmp_path: Path) -> None:
    database = tmp_path / "history.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.history_crash_child", str(database), str(model_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # the reply has been rewritten once by the timed flush
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert line.startswith("{"), f"child ended early: {line!r} {child.stderr.read() if child.stderr else ''}"
    report = json.loads(line)
    assert child.returncode == -signal.SIGKILL

    store = HistoryStore(database)  # as the next start does, with the dead process's WAL still beside it
    assert store.recovery_notice is None
    assert on_disk(database, "PRAGMA integrity_check") == [("ok",)]
    messages = store.messages(report["conversation_id"])
    assert [(m.role, m.content) for m in messages[:3]] == EARLIER_TURNS
    assert all(m.state == "complete" for m in messages[:3])
    partial = messages[3]
    assert partial.id == report["message_id"]
    assert partial.state == "interrupted"
    assert partial.content and partial.content.startswith(report["saved"])
    assert store.integrity_check() == ["ok"]
    store.add_message(partial.conversation_id, "user", "Please go on.")
    assert len(store.chat_messages(partial.conversation_id)) == 5
