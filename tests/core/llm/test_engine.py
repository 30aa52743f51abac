"""The engine on the real test model and real llama.cpp."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.errors import Cancelled, ContextOverflowError, ModelFileError, NotEnoughMemoryError
from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine
from app.core.llm.load_options import LoadOptions
from app.core.modes import SamplingOptions
from tests.helpers.models import ModelFacts

GREEDY = SamplingOptions(temperature=0.0, max_tokens=48)
LONG_TEXT = (
    "The history of the lighthouse at the harbour begins in the year the town was founded. Fishermen lit "
    "fires on the rocks to guide the boats home, and later a stone tower was built with a great lamp. "
)


def answers(engine: Engine) -> bool:
    """The engine still answers: a greedy reply to a short question, ended by the model or the token limit."""
    reply = engine.chat([{"role": "user", "content": "What is the capital of France?"}], GREEDY)
    text = reply.collect()
    return bool(text) and reply.stats.generated_tokens > 0 and reply.stats.finish_reason in ("stop", "length")


def test_a_question_gets_a_reply(engine: Engine) -> None:
    reply = engine.chat([{"role": "user", "content": "What is the capital of France?"}], GREEDY)
    text = reply.collect()
    assert text.strip()
    assert 0 < reply.stats.generated_tokens <= GREEDY.max_tokens
    assert reply.stats.finish_reason in ("stop", "length")
    assert (reply.stats.finish_reason == "length") == (reply.stats.generated_tokens == GREEDY.max_tokens)


def test_model_metadata(engine: Engine, model_path: Path, model_facts: ModelFacts) -> None:
    info = engine.model
    assert info is not None
    assert info.architecture == model_facts.architecture
    assert info.has_chat_template == (model_facts.chat_template_marker is not None)
    # A file without a template of its own runs with a built-in one, and the window is told which.
    assert (info.builtin_template is None) == info.has_chat_template
    assert (info.template_note == "") == info.has_chat_template
    assert info.native_context == model_facts.native_context
    assert info.context_size == 2048
    low, high = model_facts.parameters
    assert low < info.parameters < high
    assert info.path == model_path.resolve() or info.path == model_path
    assert info.threads >= 1


def test_reply_streams_before_it_ends_and_reports_stats(engine: Engine) -> None:
    reply = engine.chat([{"role": "user", "content": "Name five fruits, one per line."}], GREEDY)
    arrivals: list[float] = []
    for piece in reply:
        assert piece
        arrivals.append(time.perf_counter())
    ended = time.perf_counter()
    assert len(arrivals) >= 5
    assert ended - arrivals[0] > 0.01, "the first piece should arrive well before the reply ends"
    stats = reply.stats
    assert stats.generated_tokens >= len(arrivals) - 1
    assert stats.prompt_tokens > 10
    assert 0 < stats.evaluated_tokens <= stats.prompt_tokens
    assert stats.tokens_per_second > 1  # 100+ on a quiet machine, 6.5 seen on a busy one
    assert 0 < stats.time_to_first_token < stats.total_seconds
    assert stats.finish_reason in ("stop", "length")


def test_max_tokens_limits_the_reply(engine: Engine) -> None:
    reply = engine.chat(
        [{"role": "user", "content": "Write a very long essay about the sea."}],
        SamplingOptions(temperature=0.0, max_tokens=8),
    )
    reply.collect()
    assert reply.stats.generated_tokens == 8
    assert reply.stats.finish_reason == "length"


def _run_in_thread(
    engine: Engine,
    messages: list[ChatMessage],
    sampling: SamplingOptions,
    prompt_progress: Callable[[int, int], None] | None = None,
) -> dict[str, object]:
    result: dict[str, object] = {"pieces": 0}

    def consume() -> None:
        reply = engine.chat(messages, sampling, prompt_progress=prompt_progress)
        for _ in reply:
            result["pieces"] = int(result["pieces"]) + 1  # type: ignore[call-overload]
            result.setdefault("first", time.perf_counter())
        result["stats"] = reply.stats
        result["ended"] = time.perf_counter()

    worker = threading.Thread(target=consume)
    result["thread"] = worker
    worker.start()
    return result


def test_cancel_during_generation_is_fast_and_engine_stays_usable(engine: Engine) -> None:
    state = _run_in_thread(
        engine,
        [{"role": "user", "content": "Write a very long story about a dragon."}],
        SamplingOptions(temperature=0.0, max_tokens=1500),
    )
    deadline = time.monotonic() + 20
    while int(state["pieces"]) < 10 and time.monotonic() < deadline:  # type: ignore[call-overload]
        time.sleep(0.005)
    asked = time.perf_counter()
    engine.cancel()
    worker: threading.Thread = state["thread"]  # type: ignore[assignment]
    worker.join(5)
    latency = float(state["ended"]) - asked  # type: ignore[arg-type]
    # About 10 ms on a quiet machine; generous, as both llama.cpp threads must be scheduled to see it.
    assert latency < 1.0, f"cancel took {latency * 1000:.0f} ms"
    assert state["stats"].finish_reason == "cancelled"  # type: ignore[attr-defined]
    assert answers(engine)


def test_cancel_during_a_long_prompt_is_fast(engine: Engine) -> None:
    engine.clear_cache()
    long_prompt = LONG_TEXT * 40 + "\nSummarize the text above."
    evaluating = threading.Event()
    state = _run_in_thread(
        engine,
        [{"role": "user", "content": long_prompt}],
        GREEDY,
        prompt_progress=lambda _done, _total: evaluating.set(),
    )
    assert evaluating.wait(30), "the prompt's first batch was never evaluated"
    asked = time.perf_counter()
    engine.cancel()
    worker: threading.Thread = state["thread"]  # type: ignore[assignment]
    worker.join(5)
    assert not worker.is_alive()
    stats = state["stats"]
    latency = float(state["ended"]) - asked  # type: ignore[arg-type]
    assert stats.finish_reason == "cancelled"  # type: ignore[attr-defined]
    assert stats.evaluated_tokens > 1000  # type: ignore[attr-defined]
    assert state.get("first") is None, "no text should have come out of an unfinished prompt"
    assert latency < 1.0, f"cancel during prompt evaluation took {latency * 1000:.0f} ms"
    assert answers(engine)


def test_follow_up_turn_evaluates_only_its_new_tokens(engine: Engine) -> None:
    engine.clear_cache()
    messages: list[ChatMessage] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": LONG_TEXT * 3 + "What was built on the rocks?"},
    ]
    first = engine.chat(messages, GREEDY)
    messages.append({"role": "assistant", "content": first.collect()})
    assert first.stats.evaluated_tokens == first.stats.prompt_tokens
    new_text = "And who lit the first fires?"
    messages.append({"role": "user", "content": new_text})
    second = engine.chat(messages, GREEDY)
    second.collect()
    new_tokens = engine.count_tokens(new_text)
    assert second.stats.evaluated_tokens < new_tokens + 32, second.stats
    assert second.stats.prompt_tokens > first.stats.prompt_tokens


def test_history_three_times_the_context_still_gets_an_answer(engine: Engine) -> None:
    n_ctx = engine.llama.n_ctx()
    messages: list[ChatMessage] = [{"role": "system", "content": "You are a helpful assistant."}]
    turn = 0
    while sum(engine.count_tokens(m["content"]) for m in messages) < 3 * n_ctx:
        turn += 1
        messages.append({"role": "user", "content": f"Part {turn}: " + LONG_TEXT * 2})
        messages.append({"role": "assistant", "content": f"Thank you for part {turn}. " + LONG_TEXT})
    messages.append({"role": "user", "content": "What is the capital of France?"})
    reply = engine.chat(messages, GREEDY)
    text = reply.collect()
    assert text
    stats = reply.stats
    assert stats.dropped_messages > 0 and stats.dropped_messages % 2 == 0
    assert stats.dropped_turns == stats.dropped_messages // 2
    assert stats.prompt_tokens + stats.generated_tokens <= n_ctx
    # Dropped in a large block: the kept history is about half the context, leaving room to grow.
    assert stats.prompt_tokens <= n_ctx // 2 + 64

    # The next turn keeps the same cut, so the cache still serves the whole earlier prompt.
    messages.append({"role": "assistant", "content": text})
    messages.append({"role": "user", "content": "And of Italy?"})
    follow_up = engine.chat(messages, GREEDY)
    follow_up.collect()
    assert follow_up.stats.dropped_messages == stats.dropped_messages
    assert follow_up.stats.evaluated_tokens < 40


def test_pinned_messages_survive_dropping(engine: Engine) -> None:
    messages: list[ChatMessage] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Remember: the secret word is PINEAPPLE.", "pinned": True},
    ]
    for turn in range(40):
        messages.append({"role": "user", "content": f"Part {turn}: " + LONG_TEXT})
        messages.append({"role": "assistant", "content": "Noted."})
    messages.append({"role": "user", "content": "Say the secret word."})
    prompt = engine.build_prompt(messages, 64)
    assert prompt.dropped_messages > 0
    text = engine.llama.detokenize(prompt.tokens).decode()
    assert "PINEAPPLE" in text and "Part 0:" not in text


def test_single_message_longer_than_the_context(engine: Engine) -> None:
    with pytest.raises(ContextOverflowError) as caught:
        engine.chat([{"role": "user", "content": LONG_TEXT * 100}], GREEDY)
    assert "too long for the model's context" in str(caught.value)
    assert answers(engine)


def test_no_model_loaded_gives_a_sentence() -> None:
    from app.core.errors import NoModelLoadedError

    with pytest.raises(NoModelLoadedError):
        Engine().chat([{"role": "user", "content": "hi"}])


def test_load_reports_progress_and_refuses_what_does_not_fit(model_path: Path) -> None:
    engine = Engine()
    seen: list[float] = []
    info = engine.load(model_path, LoadOptions(context_size=512), progress=seen.append)
    assert info.context_size == 512
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(NotEnoughMemoryError) as caught:
        engine.load(model_path, LoadOptions(context_size=8192, memory_budget=50_000_000))
    assert "only 50.0 MB is free" in str(caught.value)
    # Refused before anything was unloaded: the model that was there still answers.
    assert engine.is_loaded and engine.model is not None and engine.model.context_size == 512


def test_context_is_capped_at_the_trained_length(model_path: Path, model_facts: ModelFacts) -> None:
    engine = Engine()
    info = engine.load(model_path, LoadOptions(context_size=1_000_000))
    assert info.context_size == model_facts.native_context
    engine.unload()


def test_cancelled_load(model_path: Path) -> None:
    engine = Engine()

    def cancel_on_first(_fraction: float) -> None:
        engine.cancel()

    with pytest.raises(Cancelled):
        engine.load(model_path, LoadOptions(context_size=512), progress=cancel_on_first)
    assert not engine.is_loaded
    stopped_early = threading.Event()
    stopped_early.set()
    with pytest.raises(Cancelled):  # a stop pressed while the load was still queued
        engine.load(model_path, LoadOptions(context_size=512), cancel=stopped_early)
    assert not engine.is_loaded
    engine.load(model_path, LoadOptions(context_size=512))
    assert engine.is_loaded


@pytest.mark.parametrize(
    "content",
    [b"", b"GGUF", b"\x00" * 1000, b"just some text\n" * 100],
    ids=["empty", "magic-only", "zeros", "text"],
)
def test_engine_refuses_bad_files_and_the_process_lives(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelFileError):
        Engine().load(path)
