"""The batched loop (app.core.llm.batched) through the engine service, on the real test model loaded with room for
several sequences: replies decoded together, each with its own sampler, stops, budget and cancel; the window's
request keeps its priority; what the loop does not take runs alone once the batch drains, on a cache the loop no
longer holds."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.errors import ContextLimitError, InvalidOptionError
from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine
from app.core.llm.grammars import JSON_OBJECT_GRAMMAR
from app.core.llm.load_options import (
    AUTOMATIC_MEMORY_SHARE,
    AUTOMATIC_PARALLEL,
    LoadOptions,
    LoadPlan,
    check_load_options,
)
from app.core.llm.sampling import ReplyOptions
from app.core.llm.saved_state_store import SavedStateStore, saved_state_key
from app.core.llm.service import EngineService, StreamedReply
from app.core.modes import SamplingOptions

CONTEXT = 2048
PARALLEL = 4
STORY: list[ChatMessage] = [
    {"role": "user", "content": "Write a very long story about a dragon and a knight."}
]
API = ReplyOptions(cut_history=False)


@pytest.fixture(scope="module")
def service(model_path: Path) -> Iterator[EngineService]:
    running = EngineService()
    running.client("setup").load_and_wait(
        str(model_path), LoadOptions(context_size=CONTEXT, parallel=PARALLEL)
    )
    yield running
    running.shutdown()


def _greedy(max_tokens: int) -> SamplingOptions:
    return SamplingOptions(temperature=0.0, max_tokens=max_tokens)


def test_parallel_is_checked_with_a_sentence() -> None:
    for wrong in (17, -1, True):
        with pytest.raises(InvalidOptionError, match="from 0 to 16"):
            check_load_options(LoadOptions(parallel=wrong))
    check_load_options(LoadOptions(parallel=16))
    check_load_options(LoadOptions(parallel=AUTOMATIC_PARALLEL))


def test_automatic_takes_as_many_sequences_as_memory_allows_each_with_the_context_chosen(
    model_path: Path,
) -> None:
    single = LoadPlan.make(model_path, LoadOptions(context_size=1024))
    four = LoadPlan.make(model_path, LoadOptions(context_size=4 * 1024, parallel=4))
    extra_for_four = four.needed - single.needed
    roomy = single.needed + int(extra_for_four / AUTOMATIC_MEMORY_SHARE) + 1
    plan = LoadPlan.make(model_path, LoadOptions(context_size=1024, parallel=AUTOMATIC_PARALLEL), roomy)
    assert (plan.options.parallel, plan.context_size, plan.options.context_size) == (4, 4096, 4096)
    assert plan.needed == four.needed
    # Too little spare memory for four: fewer; none to spare: one, the context as chosen.
    two = LoadPlan.make(model_path, LoadOptions(context_size=1024, parallel=AUTOMATIC_PARALLEL), roomy - 2)
    assert two.options.parallel == 2 and two.context_size == 2048
    alone = LoadPlan.make(
        model_path, LoadOptions(context_size=1024, parallel=AUTOMATIC_PARALLEL), single.needed
    )
    assert (alone.options.parallel, alone.context_size) == (1, 1024)
    unknown = LoadPlan.make(model_path, LoadOptions(context_size=1024, parallel=AUTOMATIC_PARALLEL))
    assert unknown.options.parallel == 1


def test_an_automatic_load_records_what_it_chose_and_gives_each_request_the_context_chosen(
    model_path: Path,
) -> None:
    engine = Engine()
    try:
        info = engine.load(
            str(model_path),
            LoadOptions(context_size=1024, parallel=AUTOMATIC_PARALLEL, memory_budget=64 * 1024**3),
        )
        assert info.context_size == engine.sequence_context == 1024  # a conversation's room, as chosen
        assert info.parallel == 4
        assert engine.load_options is not None and engine.load_options.parallel == 4
        assert engine.llama.n_ctx() == 4096
    finally:
        engine.unload()


def test_replies_run_together_each_to_its_own_budget(service: EngineService) -> None:
    api = service.client("api")
    budgets = [10, 30, 50, 70]
    replies = [api.stream_chat(STORY, _greedy(budget), options=API) for budget in budgets]
    texts = [reply_text(reply) for reply in replies]
    for budget, reply, text in zip(budgets, replies, texts, strict=True):
        assert reply.stats is not None and text
        assert reply.stats.finish_reason in ("length", "stop")
        assert 0 < reply.stats.generated_tokens <= budget
        assert reply.stats.context_size == CONTEXT // PARALLEL  # each sequence's share
        assert reply.stats.prompt_tokens > 0 and reply.stats.tokens_per_second >= 0


def test_a_seeded_reply_is_the_same_each_time_it_runs_alone_in_the_loop(service: EngineService) -> None:
    # Beside other sequences the batch's arithmetic differs (rows summed in another order), so a reply is only
    # compared with itself in the same company: here, none.
    api = service.client("api")
    sampling = SamplingOptions(temperature=0.9, seed=1234, max_tokens=40)
    first = reply_text(api.stream_chat(STORY, sampling, options=API))
    second = reply_text(api.stream_chat(STORY, sampling, options=API))
    assert first and first == second


def test_a_cancelled_sequence_leaves_and_the_others_finish(service: EngineService) -> None:
    api = service.client("api")
    kept = [api.stream_chat(STORY, _greedy(80), options=API) for _ in range(2)]
    stopped = api.stream_chat(STORY, _greedy(800), options=API)
    pieces = iter(stopped)
    next(pieces)
    stopped.cancel()
    for _ in pieces:
        pass
    assert stopped.stats is not None and stopped.stats.finish_reason == "cancelled"
    assert stopped.stats.generated_tokens < 800
    for reply in kept:
        reply_text(reply)
        assert reply.stats is not None and reply.stats.finish_reason in ("length", "stop")


def test_a_grammar_and_logprobs_work_in_the_loop(service: EngineService) -> None:
    api = service.client("api")
    shaped = api.stream_chat(
        [ChatMessage(role="user", content="Give me a JSON object describing a cat.")],
        _greedy(120),
        options=ReplyOptions(grammar=JSON_OBJECT_GRAMMAR, cut_history=False),
    )
    counted = api.stream_chat(STORY, _greedy(25), options=ReplyOptions(cut_history=False, top_logprobs=3))
    text = reply_text(shaped)
    assert shaped.stats is not None
    if shaped.stats.finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    reply_text(counted)
    assert counted.stats is not None
    assert len(counted.logprobs) == counted.stats.generated_tokens > 0
    assert all(len(entry.top) == 3 for entry in counted.logprobs)


def test_a_prompt_longer_than_a_share_is_refused(service: EngineService) -> None:
    api = service.client("api")
    long_messages = [ChatMessage(role="user", content="word " * (CONTEXT // PARALLEL + 20))]
    reply = api.stream_chat(long_messages, _greedy(5), options=API)
    with pytest.raises(ContextLimitError) as caught:
        reply_text(reply)
    assert caught.value.limit == CONTEXT // PARALLEL


def test_the_windows_request_joins_with_priority(service: EngineService) -> None:
    api, window = service.client("api"), service.client("window", priority=True)
    running = [api.stream_chat(STORY, _greedy(150), options=API) for _ in range(2)]
    for reply in running:
        reply.wait_started()
    asked = time.monotonic()
    urgent = window.stream_chat([ChatMessage(role="user", content="Hello!")], _greedy(10))
    urgent_text = reply_text(urgent)
    answered = time.monotonic()
    assert urgent.stats is not None and urgent_text
    assert urgent.stats.context_size == CONTEXT // PARALLEL  # it ran in the batch, not after it
    for reply in running:
        reply_text(reply)
        assert reply.stats is not None
    assert answered - asked < 60


def test_what_the_loop_does_not_take_runs_alone_after_the_batch(service: EngineService) -> None:
    api = service.client("api")
    batched = api.stream_chat(STORY, _greedy(60), options=API)
    batched.wait_started()
    # An echo is not batched: it waits for the batch to drain and runs on the engine's own path, which trusts
    # only sequence 0's cells (the loop keeps their record true): at most the BOS that begins them is shared.
    completion = api.stream_completion("Once upon a time", _greedy(10), echo=True)
    completion_text = reply_text(completion)
    reply_text(batched)
    assert completion_text.startswith("Once upon a time")
    assert completion.stats is not None
    assert completion.stats.evaluated_tokens >= completion.stats.prompt_tokens - 1
    # The loop takes requests again after the engine's own path ran.
    again = api.stream_chat(STORY, _greedy(10), options=API)
    reply_text(again)
    assert again.stats is not None and again.stats.context_size == CONTEXT // PARALLEL


def test_a_windows_conversation_has_one_share_of_the_context_on_either_path(service: EngineService) -> None:
    window, api = service.client("window", priority=True), service.client("api")
    turn = "word " * 120
    conversation: list[ChatMessage] = []
    for _ in range(4):
        conversation += [ChatMessage(role="user", content=turn), ChatMessage(role="assistant", content=turn)]
    conversation.append(ChatMessage(role="user", content="And now?"))
    alone = window.stream_chat(conversation, _greedy(5))  # the engine idle: its own path
    reply_text(alone)
    batched = api.stream_chat(STORY, _greedy(120), options=API)
    batched.wait_started()
    beside = window.stream_chat(conversation, _greedy(5))  # a batch under way: it joins it
    reply_text(beside)
    reply_text(batched)
    for reply in (alone, beside):
        assert reply.stats is not None
        assert reply.stats.context_size == CONTEXT // PARALLEL
        assert reply.stats.dropped_messages > 0  # cut to the share, not to the whole context
        assert reply.stats.prompt_tokens + 5 <= CONTEXT // PARALLEL


def _first_token_choices(reply: StreamedReply) -> dict[bytes, float]:
    assert reply.logprobs
    return dict(reply.logprobs[0].top)


def test_a_clients_next_turn_continues_from_its_sequences_cells(service: EngineService) -> None:
    api = service.client("api")
    first = api.stream_chat(STORY, _greedy(12), options=API)
    answer = reply_text(first)
    follow_up: list[ChatMessage] = [
        *STORY,
        ChatMessage(role="assistant", content=answer),
        ChatMessage(role="user", content="Give the knight a name."),
    ]
    with_logprobs = ReplyOptions(cut_history=False, top_logprobs=5)
    continued = api.stream_chat(follow_up, _greedy(4), options=with_logprobs)
    reply_text(continued)
    assert first.stats is not None and continued.stats is not None
    # The first turn's prompt was held (all but what the template writes after a reply differently).
    assert continued.stats.evaluated_tokens <= continued.stats.prompt_tokens - (first.stats.prompt_tokens - 1)
    # A request on the engine's own path takes the loop's other cells away: the same turn is evaluated whole,
    # and its first token is drawn from the same distribution (cells of the wrong tokens or places would not).
    reply_text(api.stream_completion("Once upon a time", _greedy(2), echo=True))
    cold = api.stream_chat(follow_up, _greedy(4), options=with_logprobs)
    reply_text(cold)
    assert cold.stats is not None and cold.stats.evaluated_tokens == cold.stats.prompt_tokens
    cold_choices, warm_choices = _first_token_choices(cold), _first_token_choices(continued)
    best = max(cold_choices, key=cold_choices.__getitem__)
    assert best in warm_choices and abs(warm_choices[best] - cold_choices[best]) < 1.0


def test_the_same_requests_again_find_their_own_cells(service: EngineService) -> None:
    api = service.client("api")
    prompts = [
        [ChatMessage(role="user", content=f"Story {n}: a dragon and knight {n}.")] for n in range(PARALLEL)
    ]
    for _ in range(2):  # the first round may meet cells of earlier tests' prompts
        replies = [api.stream_chat(prompt, _greedy(6), options=API) for prompt in prompts]
        for reply in replies:
            reply_text(reply)
    again = [api.stream_chat(prompt, _greedy(6), options=API) for prompt in reversed(prompts)]
    for reply in again:
        reply_text(reply)
        assert reply.stats is not None and reply.stats.evaluated_tokens == 1  # only the last prompt token


def test_the_windows_conversation_goes_on_from_the_same_cells_on_either_path(service: EngineService) -> None:
    window, api = service.client("window", priority=True), service.client("api")
    conversation: list[ChatMessage] = [ChatMessage(role="user", content="Name three colours of the rainbow.")]
    alone = window.stream_chat(conversation, _greedy(12))  # the engine idle: its own path, sequence 0
    conversation += [
        ChatMessage(role="assistant", content=reply_text(alone)),
        ChatMessage(role="user", content="And two more?"),
    ]
    batched = api.stream_chat(STORY, _greedy(300), options=API)
    batched.wait_started()
    beside = window.stream_chat(conversation, _greedy(12))  # it joins the batch, in sequence 0
    conversation += [
        ChatMessage(role="assistant", content=reply_text(beside)),
        ChatMessage(role="user", content="Thanks."),
    ]
    assert batched.stats is None  # the batch was still under way: the window's turn ran in it
    reply_text(batched)
    after = window.stream_chat(conversation, _greedy(4))  # the batch drained: the engine's own path again
    reply_text(after)
    assert alone.stats is not None and beside.stats is not None and after.stats is not None
    assert beside.stats.evaluated_tokens <= beside.stats.prompt_tokens - (alone.stats.prompt_tokens - 1)
    assert after.stats.evaluated_tokens <= after.stats.prompt_tokens - (beside.stats.prompt_tokens - 1)


def test_a_saved_conversation_is_restored_into_sequence_zero_inside_a_batch(
    model_path: Path, tmp_path: Path
) -> None:
    engine = Engine()
    engine.states.cache = SavedStateStore(tmp_path / "states")
    running = EngineService(engine)
    try:
        window, api = running.client("window", priority=True), running.client("api")
        window.load_and_wait(str(model_path), LoadOptions(context_size=CONTEXT, parallel=PARALLEL))
        assert engine.states.wait_for_signature(60)
        first_key, other_key = saved_state_key("first"), saved_state_key("other")
        first: list[ChatMessage] = [ChatMessage(role="user", content="Tell me about dragons. " * 20)]
        answered = window.stream_chat(first, _greedy(8), state_key=first_key)
        first += [
            ChatMessage(role="assistant", content=reply_text(answered)),
            ChatMessage(role="user", content="And knights?"),
        ]
        # Another conversation takes sequence 0; the first one's state is saved as it goes.
        reply_text(
            window.stream_chat([ChatMessage(role="user", content="Hi!")], _greedy(4), state_key=other_key)
        )
        batched = api.stream_chat(STORY, _greedy(300), options=API)
        batched.wait_started()
        back = window.stream_chat(first, _greedy(4), state_key=first_key)  # joins the batch
        reply_text(back)
        assert batched.stats is None  # the batch was still under way
        reply_text(batched)
        assert answered.stats is not None and back.stats is not None
        # The first turn came back from its saved state: only the new turn was evaluated.
        assert back.stats.evaluated_tokens <= back.stats.prompt_tokens - (answered.stats.prompt_tokens - 1)
    finally:
        running.shutdown()


def test_shutdown_ends_a_batch_under_way(model_path: Path) -> None:
    running = EngineService()
    api = running.client("api")
    api.load_and_wait(str(model_path), LoadOptions(context_size=1024, parallel=2))
    replies = [api.stream_chat(STORY, _greedy(900), options=API) for _ in range(2)]
    for reply in replies:
        reply.wait_started()
    finished = threading.Event()

    def drain() -> None:
        for reply in replies:
            for _ in reply:
                pass
        finished.set()

    threading.Thread(target=drain, daemon=True).start()
    assert running.shutdown(timeout_s=60)
    assert finished.wait(30)
    assert all(reply.stats is not None and reply.stats.finish_reason == "cancelled" for reply in replies)


def reply_text(reply: StreamedReply) -> str:
    return "".join(reply)


def test_the_engine_counts_as_busy_from_a_batch_s_first_sequence_to_its_last(service: EngineService) -> None:
    """Background work (a library being indexed) waits on ``activity``: it must see a batch as one piece of work,
    not as idle between steps."""
    api = service.client("api")
    assert not service.activity.busy
    # The second runs far longer, so the batch is under way while every piece of the first is read.
    replies = [api.stream_chat(STORY, _greedy(budget), options=API) for budget in (20, 400)]
    seen_busy: list[bool] = []
    for piece in replies[0]:
        seen_busy.append(service.activity.busy)
        assert piece is not None
    reply_text(replies[1])
    assert seen_busy and all(seen_busy)
    deadline = time.monotonic() + 10
    while service.activity.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not service.activity.busy
    waited = service.activity.wait_until_idle()
    assert waited < 1.0
