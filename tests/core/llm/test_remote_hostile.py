"""The remote engine against a hostile server on 127.0.0.1 (tests/fixtures/hostile_openai.py): a line or an event
without end, a flood, keep-alives without a token, escape sequences in what it says. Each ends the reply with a
sentence, keeps what arrived, holds memory within bounds and lets nothing a terminal acts on through."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from app.core.llm.context import ChatMessage
from app.core.llm.remote import RemoteEngine
from app.core.llm.remote_config import RemoteEngineError, RemoteServer
from app.core.llm.remote_server import list_models, server_text
from app.core.llm.remote_stream import MAX_LINE_BYTES, MAX_RESPONSE_BYTES, BoundedLines
from app.core.modes import SamplingOptions
from tests.fixtures.hostile_openai import (
    ESCAPED_MODEL,
    HostileServer,
    running_hostile_server,
)

QUESTION: list[ChatMessage] = [{"role": "user", "content": "Hello?"}]
SAMPLING = SamplingOptions(temperature=0.0, max_tokens=50)
MB = 1_000_000
CONTROLS = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))]


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with running_hostile_server() as server:
        yield server


def connected(url: str, **options: object) -> RemoteEngine:
    engine = RemoteEngine(RemoteServer(url, **options))  # type: ignore[arg-type]
    engine.connect()
    return engine


def streamed(engine: RemoteEngine, cancel: threading.Event | None = None) -> tuple[str, str | None, float]:
    """The text that arrived, the failure sentence if any, and the seconds the reply took."""
    started = time.monotonic()
    reply = engine.chat(QUESTION, SAMPLING, cancel=cancel)
    try:
        reply.collect()
    except RemoteEngineError as exc:
        return reply.text, str(exc), time.monotonic() - started
    return reply.text, None, time.monotonic() - started


def shown_safely(text: str) -> bool:
    return not any(control in text for control in CONTROLS)


# -- sizes -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [("endless-line", "a line longer than 4.0 MB"), ("endless-event", "an event longer than 4.0 MB")],
)
def test_a_line_or_event_without_end_ends_the_reply_in_bounded_memory(
    hostile: HostileServer, behaviour: str, expected: str
) -> None:
    engine = connected(hostile.url(behaviour))
    process = psutil.Process()
    before = process.memory_info().rss
    text, sentence, took = streamed(engine)
    grown = (process.memory_info().rss - before) / MB
    print(f"{behaviour}: ended after {took:.2f} s, memory grew {grown:.1f} MB: {sentence}")
    assert text == "" and sentence is not None
    assert expected in sentence and "may not be an OpenAI-compatible server" in sentence
    assert took < 30 and grown < 200
    assert hostile.seen.hung_up.wait(10), "the client never closed the connection"


def test_a_response_without_end_ends_at_its_limit(hostile: HostileServer) -> None:
    engine = connected(hostile.url("flood"))
    process = psutil.Process()
    before = process.memory_info().rss
    text, sentence, took = streamed(engine)
    grown = (process.memory_info().rss - before) / MB
    print(f"flood: ended after {took:.2f} s, memory grew {grown:.1f} MB: {sentence}")
    assert text == "" and sentence is not None
    assert f"more than {MAX_RESPONSE_BYTES // MB}.0 MB for one reply" in sentence
    assert took < 120 and grown < 200


def test_lines_split_on_every_ending_across_pieces_and_stop_at_the_limit() -> None:
    lines = BoundedLines(RemoteServer("http://127.0.0.1:1/v1"), limit=10)
    got = [*lines.feed(b"one\r"), *lines.feed(b"\ntwo\nthr"), *lines.feed(b"ee\rfour"), *lines.finish()]
    assert got == [b"one", b"two", b"three", b"four"]
    assert list(lines.feed(b"0123456789\n")) == [b"0123456789"]  # at the limit, ended: kept
    with pytest.raises(RemoteEngineError, match="a line longer than 10 bytes"):
        list(lines.feed(b"0123456789A"))
    assert MAX_LINE_BYTES < MAX_RESPONSE_BYTES


# -- waiting -----------------------------------------------------------------------------------------------------


def test_keep_alives_alone_end_the_reply_after_the_wait(hostile: HostileServer) -> None:
    engine = connected(hostile.url("pings"), wait_seconds=1.0)
    text, sentence, took = streamed(engine)
    print(f"keep-alives only: ended after {took:.2f} s: {sentence}")
    assert text == "" and sentence is not None
    assert "sent nothing of the reply for 1 second," in sentence and "--remote-wait" in sentence
    assert 0.9 < took < 10


def test_keep_alives_after_text_keep_the_text_and_end_after_the_wait(hostile: HostileServer) -> None:
    engine = connected(hostile.url("text-then-pings"), wait_seconds=2.0)
    text, sentence, took = streamed(engine)
    print(f"text, then keep-alives: ended after {took:.2f} s: {sentence}")
    assert text == "Hello" and sentence is not None and "sent nothing of the reply for 2 seconds" in sentence
    assert "kept" in sentence and took < 15


def test_stop_ends_a_reply_of_keep_alives_at_once(hostile: HostileServer) -> None:
    engine = connected(hostile.url("pings"), wait_seconds=600.0)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    reply = engine.chat(QUESTION, SAMPLING, cancel=cancel)
    assert reply.collect() == ""
    waited = time.monotonic() - started
    assert reply.stats.finish_reason == "cancelled" and waited < 2


# -- what the server says ----------------------------------------------------------------------------------------


def test_escape_sequences_in_an_error_never_reach_the_sentence(hostile: HostileServer) -> None:
    text, sentence, _took = streamed(connected(hostile.url("escape-error")))
    print(repr(sentence))
    assert text == "" and sentence is not None and "failed while answering (500: CUDA" in sentence
    assert "out of memory" in sentence and shown_safely(sentence) and "pwned" not in sentence


def test_escape_sequences_in_model_names_and_replies_are_removed(hostile: HostileServer) -> None:
    clean_name = "evil-model"
    assert list_models(RemoteServer(hostile.url("escapes"))) == [clean_name]
    engine = connected(hostile.url("escapes"))
    assert engine.model is not None and engine.model.name == clean_name
    reply = engine.chat(QUESTION, SAMPLING)
    text = reply.collect()
    print(repr(text))
    assert text == "Hi there.\n\tIndented line."  # lines and tabs kept, nothing else a terminal acts on
    assert reply.stats.finish_reason == "stop"
    with pytest.raises(RemoteEngineError) as refused:
        connected(hostile.url("escapes"), model=ESCAPED_MODEL)
    assert shown_safely(str(refused.value)) and clean_name in str(refused.value)


@pytest.mark.parametrize(
    ("said", "one_line", "lines"),
    [
        ("a\x1b[1;31mred\x1b[0m b", "ared b", "ared b"),
        ("title\x1b]0;pwned\x07 set", "title set", "title set"),
        ("link\x1b]8;;http://x\x1b\\here\x1b]8;;\x1b\\", "linkhere", "linkhere"),
        ("c1\x9b2J csi\x9d0;t\x9c!", "c1 csi!", "c1 csi!"),
        ("tab\there\nnew\r\x00\x7f\x85", "tab here new", "tab\there\nnew"),
        ("charset \x1b(B and save \x1b7", "charset  and save ", "charset  and save "),
        ("naïve 日本 ✓", "naïve 日本 ✓", "naïve 日本 ✓"),
    ],
)
def test_server_text_removes_escape_sequences_whole_and_control_characters(
    said: str, one_line: str, lines: str
) -> None:
    assert server_text(said) == one_line
    assert server_text(said, lines=True) == lines
