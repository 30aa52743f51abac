"""Prompt-lookup drafting (app.core.llm.drafting) in the engine's decode loop, on the real test models."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.llm.bindings import cached_tokens
from app.core.llm.context import ChatMessage
from app.core.llm.drafting import PromptLookupDrafter, drafting_applies
from app.core.llm.engine import Engine, Reply
from app.core.llm.load_options import LoadOptions
from app.core.llm.sampling import ReplyOptions
from app.core.modes import SamplingOptions

# Drafted rows of a batch may come out of llama.cpp's CPU kernels a little different from the same token evaluated
# alone (up to ~1.0 in a logit on the CPU this was built on; see app.bench.drafting): where the plain reply's two
# best tokens are closer than this, the two replies may part without either being wrong.
NEAR_TIE = 2.5

_LINES = "\n".join(
    f"    total_{i} = value * {i} + offset\n    print('step {i}', total_{i})" for i in range(8)
)
COPYING: list[ChatMessage] = [
    {
        "role": "user",
        "content": "Rewrite this function with the variable value renamed to amount. Output the whole code.\n\n"
        "def compute(value, offset):\n" + _LINES + "\n    return value\n",
    }
]


@pytest.fixture(scope="module", params=["model_path", "gemma_path"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """Each test model loaded once for this module: SmolLM2 (``model_path``) and Gemma 3 270M (``gemma_path``)."""
    path: Path = request.getfixturevalue(request.param)
    loaded = Engine()
    loaded.load(path, LoadOptions(context_size=2048))
    yield loaded
    loaded.unload()


def _greedy(
    engine: Engine, messages: list[ChatMessage], draft: str, max_tokens: int = 120, **more: object
) -> Reply:
    options = ReplyOptions(draft="lookup" if draft == "lookup" else "off", **more)  # type: ignore[arg-type]
    reply = engine.chat(messages, SamplingOptions(temperature=0.0, max_tokens=max_tokens), options=options)
    reply.collect()
    return reply


def _evaluated_reply(engine: Engine, prompt_length: int) -> list[int]:
    """The reply's tokens the cache holds after it: all but the last, which was never evaluated (its text and
    log-probability still name it)."""
    return cached_tokens(engine.llama)[prompt_length:]


def test_the_drafter_continues_from_the_latest_longest_match() -> None:
    drafter = PromptLookupDrafter([1, 2, 3, 4, 5, 9, 2, 3, 4, 6, 7])
    for token in (2, 3, 4):
        drafter.add(token)
    assert drafter.draft(3) == [6, 7, 2]  # "2 3 4" last went on with 6 7 (and the text after it)
    assert PromptLookupDrafter([1, 2, 3]).draft(4) == []  # its end occurred nowhere before
    assert PromptLookupDrafter([5, 1, 2, 3, 1, 2]).draft(4) == []  # two tokens in common are too few


def test_a_missed_draft_pauses_drafting_and_shortens_the_next() -> None:
    drafter = PromptLookupDrafter([1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3])
    assert drafter.draft(10) == [4, 5, 6, 7, 8, 9, 1, 2]
    drafter.verified(drafted=8, accepted=0)
    drafter.add(4)
    assert drafter.draft(10) == []  # paused
    drafter.add(5)
    drafter.add(6)
    assert 0 < len(drafter.draft(10)) <= 3  # back, shorter


def test_drafting_is_off_where_it_cannot_apply() -> None:
    assert drafting_applies(ReplyOptions())
    assert not drafting_applies(ReplyOptions(draft="off"))
    assert not drafting_applies(ReplyOptions(draft="lookup", grammar='root ::= "a"'))
    assert not drafting_applies(ReplyOptions(draft="lookup", tools=[{"type": "function"}]))


def test_greedy_drafting_gives_the_plain_reply_token_for_token(engine: Engine) -> None:
    prompt_length = len(engine.tokenize_messages(COPYING)[0])
    plain = _greedy(engine, COPYING, "off", top_logprobs=0)
    plain_tokens = _evaluated_reply(engine, prompt_length)
    drafted = _greedy(engine, COPYING, "lookup", top_logprobs=0)
    drafted_tokens = _evaluated_reply(engine, prompt_length)

    assert drafted.stats.accepted_tokens > 0, "the prompt was chosen so drafts are taken: none was"
    assert 0 < drafted.stats.accepted_tokens <= drafted.stats.drafted_tokens
    assert plain.stats.drafted_tokens == 0
    if drafted_tokens == plain_tokens and drafted.text == plain.text:
        assert [p.token for p in drafted.logprobs] == [p.token for p in plain.logprobs]
        return
    # They parted: only a near-tie of the plain decoding's two best tokens, where the batch kernels' float
    # differences may decide, excuses it (see NEAR_TIE).
    common = 0
    while (
        common < min(len(plain_tokens), len(drafted_tokens))
        and plain_tokens[common] == drafted_tokens[common]
    ):
        common += 1
    prompt = engine.tokenize_messages(COPYING)[0] + plain_tokens[:common]
    there = engine.complete(
        prompt,
        SamplingOptions(temperature=0.0, max_tokens=1),
        options=ReplyOptions(top_logprobs=2, draft="off"),
    )
    there.collect()
    (best, second) = there.logprobs[0].top[:2]
    assert best[1] - second[1] < NEAR_TIE, f"the replies parted at token {common}, where the model was sure"


def test_seeded_sampling_with_drafts_is_repeatable_and_counted(engine: Engine) -> None:
    sampling = SamplingOptions(temperature=0.7, seed=1234, max_tokens=60, repeat_penalty=1.1)
    replies = []
    for _ in range(2):
        reply = engine.chat(COPYING, sampling, options=ReplyOptions(draft="lookup"))
        reply.collect()
        replies.append(reply)
    first, second = replies
    assert first.stats.finish_reason in ("stop", "length")
    assert 0 < first.stats.generated_tokens <= 60
    assert 0 <= first.stats.accepted_tokens <= first.stats.drafted_tokens
    assert first.text == second.text  # the seed decides the draws, drafts or not


def test_max_tokens_stops_and_cancel_hold_with_drafts(engine: Engine) -> None:
    short = _greedy(engine, COPYING, "lookup", max_tokens=7)
    assert short.stats.finish_reason == "length"
    assert short.stats.generated_tokens == 7

    whole = _greedy(engine, COPYING, "lookup", max_tokens=80)
    words = [word for word in whole.text.split() if len(word) > 3]
    assert words, "the reply should hold some words to stop at"
    stop = words[len(words) // 2]
    stopped = _greedy(engine, COPYING, "lookup", max_tokens=80, stops=(stop,))
    assert stopped.stats.finish_reason == "stop"
    assert stop not in stopped.text
    assert whole.text.startswith(stopped.text)

    cancel = threading.Event()
    reply = engine.chat(
        COPYING,
        SamplingOptions(temperature=0.0, max_tokens=200),
        cancel=cancel,
        options=ReplyOptions(draft="lookup"),
    )
    pieces = []
    for piece in reply:
        pieces.append(piece)
        cancel.set()
    assert reply.stats.finish_reason == "cancelled"
    assert reply.stats.generated_tokens < 200


def test_the_cache_holds_the_reply_after_drafts_and_a_follow_up_matches_a_fresh_engine(
    engine: Engine,
) -> None:
    prompt = engine.tokenize_messages(COPYING)[0]
    drafted = _greedy(engine, COPYING, "lookup", max_tokens=100)
    held = cached_tokens(engine.llama)
    assert drafted.stats.accepted_tokens > 0
    # The prompt and every reply token but the last (never evaluated), and no drafted token beyond them.
    assert held[: len(prompt)] == prompt
    unevaluated = 1 if drafted.stats.finish_reason == "length" else 0  # an end-of-text token is not counted
    assert len(held) == len(prompt) + drafted.stats.generated_tokens - unevaluated
    assert int(engine.llama.n_tokens) == len(held)

    follow_up: list[ChatMessage] = [
        *COPYING,
        {"role": "assistant", "content": drafted.text},
        {"role": "user", "content": "Now rename offset to shift, same way."},
    ]
    again = _greedy(engine, follow_up, "lookup", max_tokens=60)
    assert again.stats.evaluated_tokens < len(engine.tokenize_messages(follow_up)[0])  # the cache served

    fresh = Engine()
    assert engine.model is not None
    fresh.load(engine.model.path, LoadOptions(context_size=2048))
    try:
        first = _greedy(fresh, follow_up, "lookup", max_tokens=60)
    finally:
        fresh.unload()
    assert again.text == first.text
