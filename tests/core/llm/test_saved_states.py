"""saved states on the real model and real llama.cpp: restored after a reload, refused when they do
not fit, and a restored reply always equal to a cold one."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine
from app.core.llm.load_options import LoadOptions
from app.core.llm.saved_state_store import SUFFIX, SavedStateStore, saved_state_key
from app.core.modes import SamplingOptions
from tests.helpers.slow_disk import SlowDisk

GREEDY = SamplingOptions(temperature=0.0, max_tokens=6, seed=1)
CONTEXT = 2048
FILLER = (
    "My garden has sandy soil that dries quickly in summer; the north corner stays shaded until noon, "
    "the tomatoes there grew slowly last year while the beans did well. "
)


def conversation(question: str = "What should I plant there next spring?") -> list[ChatMessage]:
    return [
        {"role": "system", "content": "You are a helpful gardening assistant."},
        {"role": "user", "content": FILLER * 4 + "What grows well in sandy soil?"},
        {"role": "assistant", "content": "Carrots, radishes, lettuce and most herbs like sandy soil."},
        {"role": "user", "content": question},
    ]


@pytest.fixture(scope="module")
def states_engine(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine of this module's own, its states in a folder of its own."""
    engine = Engine()
    engine.states.cache = SavedStateStore(tmp_path_factory.mktemp("states") / "states")
    engine.load(model_path, LoadOptions(context_size=CONTEXT))
    assert engine.states.wait_for_signature(60)
    yield engine
    engine.unload()


@pytest.fixture(scope="module")
def cold_replies(states_engine: Engine) -> dict[str, str]:
    """Replies evaluated from an empty cache, by question, computed once."""
    return {}


def cold_reply(engine: Engine, replies: dict[str, str], messages: list[ChatMessage]) -> str:
    question = messages[-1]["content"] + messages[1]["content"]
    if question not in replies:
        engine.clear_cache()
        replies[question] = engine.chat(messages, GREEDY).collect()
    return replies[question]


def save_conversation(engine: Engine, key: str, messages: list[ChatMessage]) -> None:
    """Answer the conversation's first question under ``key`` and let the engine save its state."""
    engine.clear_cache()
    engine.chat(messages[:2], GREEDY, state_key=key).collect()
    engine.idle()
    assert engine.states.cache.flush(60)


def reload(engine: Engine, path: Path, context_size: int = CONTEXT) -> None:
    """As after a restart: the model loaded again, nothing of the conversation in memory, and its file hashed
    (a new file is hashed in the background: until then its saved states are not read)."""
    engine.unload()
    assert engine.states.cache.flush(60)
    engine.load(path, LoadOptions(context_size=context_size))
    assert engine.states.wait_for_signature(60)


def state_files(engine: Engine) -> list[Path]:
    return sorted(p for p in engine.states.cache.folder.iterdir() if p.name.endswith(SUFFIX))


def test_a_restored_state_gives_the_same_greedy_reply_as_a_cold_evaluation(
    states_engine: Engine, cold_replies: dict[str, str], model_path: Path
) -> None:
    key = saved_state_key("1")
    messages = conversation()
    save_conversation(states_engine, key, messages)
    reload(states_engine, model_path)
    reply = states_engine.chat(messages, GREEDY, state_key=key)
    restored = reply.collect()
    assert states_engine.states.last_restored_tokens > 100
    # Only the follow-up question (and the reply's re-tokenized tail) is evaluated.
    assert reply.stats.evaluated_tokens < reply.stats.prompt_tokens / 3
    assert restored == cold_reply(states_engine, cold_replies, messages)


def test_a_state_of_another_model_file_is_refused_and_the_reply_is_right(
    states_engine: Engine,
    cold_replies: dict[str, str],
    model_path: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = saved_state_key("2")
    messages = conversation()
    save_conversation(states_engine, key, messages)
    # Another model file by its content: the same weights with one letter of its name changed.
    other = tmp_path / "other.gguf"
    shutil.copyfile(model_path, other)
    raw = bytearray(other.read_bytes()[: 1 << 20])
    at = raw.index(b"general.name") + len(b"general.name") + 4 + 8
    with other.open("r+b") as handle:
        handle.seek(at)
        handle.write(bytes([raw[at] ^ 0x20]))
    try:
        reload(states_engine, other)
        with caplog.at_level(logging.INFO, logger="app.core.llm.saved_state_store"):
            reply = states_engine.chat(messages, GREEDY, state_key=key).collect()
        assert states_engine.states.last_restored_tokens == 0
        assert "another model or setting" in caplog.text
        assert reply == cold_reply(states_engine, cold_replies, messages)
    finally:
        reload(states_engine, model_path)


def test_a_state_saved_at_another_context_size_is_refused(
    states_engine: Engine, cold_replies: dict[str, str], model_path: Path
) -> None:
    key = saved_state_key("3")
    messages = conversation()
    save_conversation(states_engine, key, messages)
    try:
        reload(states_engine, model_path, context_size=1024)
        reply = states_engine.chat(messages, GREEDY, state_key=key).collect()
        assert states_engine.states.last_restored_tokens == 0
        assert reply == cold_reply(states_engine, cold_replies, messages)
    finally:
        reload(states_engine, model_path)


def test_an_edited_earlier_message_uses_the_state_only_up_to_the_edit(
    states_engine: Engine, cold_replies: dict[str, str], model_path: Path
) -> None:
    key = saved_state_key("4")
    messages = conversation()
    save_conversation(states_engine, key, messages)
    reload(states_engine, model_path)
    edited = conversation()
    edited[1] = {"role": "user", "content": FILLER * 4 + "What grows well in clay soil?"}
    reply = states_engine.chat(edited, GREEDY, state_key=key)
    text = reply.collect()
    assert states_engine.states.last_restored_tokens > 0
    assert reply.stats.evaluated_tokens > 20  # from the edit on
    assert text == cold_reply(states_engine, cold_replies, edited)


def test_a_truncated_state_file_is_discarded_and_the_reply_is_right(
    states_engine: Engine,
    cold_replies: dict[str, str],
    model_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = saved_state_key("5")
    messages = conversation()
    before = set(state_files(states_engine))
    save_conversation(states_engine, key, messages)
    (saved,) = set(state_files(states_engine)) - before
    with saved.open("r+b") as handle:
        handle.truncate(saved.stat().st_size // 2)
    reload(states_engine, model_path)
    with caplog.at_level(logging.WARNING, logger="app.core.llm.saved_state_store"):
        reply = states_engine.chat(messages, GREEDY, state_key=key).collect()
    assert states_engine.states.last_restored_tokens == 0
    assert "discarded" in caplog.text and not saved.exists()
    assert reply == cold_reply(states_engine, cold_replies, messages)


def test_switching_conversations_restores_each_from_memory(
    states_engine: Engine, cold_replies: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = saved_state_key("6"), saved_state_key("7")
    messages = conversation()
    save_conversation(states_engine, first, messages)
    other: list[ChatMessage] = [{"role": "user", "content": "Name a colour, in one word, please."}] * 1
    states_engine.chat(other, GREEDY, state_key=second).collect()
    with caplog.at_level(logging.INFO, logger="app.core.llm.saved_states"):
        reply = states_engine.chat(messages, GREEDY, state_key=first)
        text = reply.collect()
    assert "from memory" in caplog.text
    assert reply.stats.evaluated_tokens < reply.stats.prompt_tokens / 3
    assert text == cold_reply(states_engine, cold_replies, messages)


def test_requests_without_a_key_save_nothing(states_engine: Engine) -> None:
    states_engine.clear_cache()
    before = set(state_files(states_engine))
    states_engine.chat(conversation()[:2], GREEDY).collect()
    states_engine.idle()
    assert states_engine.states.cache.flush(60)
    assert set(state_files(states_engine)) == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="a named pipe stands in for a slow disk")
def test_a_reply_while_the_model_file_is_hashed_does_not_wait_and_is_no_speed_measurement(
    states_engine: Engine, cold_replies: dict[str, str], model_path: Path, tmp_path: Path
) -> None:
    key = saved_state_key("8")
    messages = conversation()
    save_conversation(states_engine, key, messages)
    reload(states_engine, model_path)
    # As if the file just loaded were new and on a slow disk: its hash cannot finish until the disk answers.
    disk = SlowDisk(tmp_path / "new-model.gguf", b"weights")
    states_engine.states.model_loaded(disk.path, states_engine.llama)
    try:
        started = time.perf_counter()
        reply = states_engine.chat(messages, GREEDY, state_key=key)
        text = reply.collect()
        states_engine.idle()  # the state is copied and queued: the writer waits for the hash, not the engine
        engine_thread_seconds = time.perf_counter() - started
        assert not disk.answered_late
        assert states_engine.states.last_restored_tokens == 0  # the saved file is not read before the hash
        assert reply.stats.hashing_model  # the hash shared the machine: no speed measurement
        assert text == cold_reply(states_engine, cold_replies, messages)
        print(f"reply while the model file was being hashed: {engine_thread_seconds:.2f} s")
        disk.answer()
        assert states_engine.states.wait_for_signature(30)
        assert states_engine.states.cache.flush(30)
        after = states_engine.chat(messages, GREEDY, state_key=key)
        after.collect()
        assert not after.stats.hashing_model
    finally:
        disk.answer()
        reload(states_engine, model_path)
