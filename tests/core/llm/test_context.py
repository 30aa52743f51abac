"""The context cut as a pure function: a tokenizer of one token per word stands in for the model's."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from app.core.errors import ContextOverflowError
from app.core.llm.context import ChatMessage, ContextCut, fit_to_context


def words(messages: Sequence[ChatMessage]) -> tuple[list[int], list[str]]:
    tokens = [len(word) for m in messages for word in f"<{m['role']}> {m['content']}".split()]
    return tokens, ["<end>"]


def count(text: str) -> int:
    return len(text.split())


def conversation(turns: int, words_per_turn: int) -> list[ChatMessage]:
    messages: list[ChatMessage] = [{"role": "system", "content": "be brief"}]
    for turn in range(turns):
        messages.append({"role": "user", "content": f"q{turn} " + "w " * words_per_turn})
        messages.append({"role": "assistant", "content": f"a{turn} " + "w " * words_per_turn})
    messages.append({"role": "user", "content": "last question"})
    return messages


def test_a_conversation_that_fits_is_sent_whole() -> None:
    messages = conversation(3, 10)
    prompt, cut = fit_to_context(messages, words, count, 1000, 100)
    assert prompt.dropped_messages == 0 and cut.dropped_count == 0
    assert len(prompt.tokens) == len(words(messages)[0])
    assert prompt.stop == ["<end>"]


def test_overflow_drops_whole_turns_down_to_half_the_context_and_keeps_the_cut() -> None:
    messages = conversation(20, 20)
    prompt, cut = fit_to_context(messages, words, count, 400, 50)
    assert prompt.dropped_messages > 0 and prompt.dropped_messages % 2 == 0
    assert len(prompt.tokens) + 50 <= 200  # the low-water mark: half the context
    # The next turn keeps the same cut while it still fits, so the prompt's start (and the cache) stay.
    longer = [*messages, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]
    again, same_cut = fit_to_context(longer, words, count, 400, 50, cut)
    assert again.dropped_messages == prompt.dropped_messages and same_cut == cut
    assert again.tokens[: len(prompt.tokens) - 3] == prompt.tokens[: len(prompt.tokens) - 3]


def test_system_prompt_and_pinned_messages_are_never_dropped() -> None:
    messages = conversation(20, 20)
    messages.insert(1, {"role": "user", "content": "PINNED " * 5, "pinned": True})
    prompt, _ = fit_to_context(messages, words, count, 300, 50)
    kept_text = words([messages[0], messages[1]])[0]
    assert prompt.tokens[: len(kept_text)] == kept_text


def test_a_cut_from_another_conversation_is_not_reused() -> None:
    messages = conversation(20, 20)
    stale = ContextCut("not-this-conversation", 4)
    prompt, cut = fit_to_context(messages, words, count, 10_000, 50, stale)
    assert prompt.dropped_messages == 0 and cut.dropped_count == 0


def test_the_reply_budget_shrinks_to_what_is_left() -> None:
    messages = conversation(1, 10)
    prompt, _ = fit_to_context(messages, words, count, 60, 1000)
    assert prompt.max_tokens == 60 - len(prompt.tokens)


def test_a_message_longer_than_the_context_is_a_sentence() -> None:
    with pytest.raises(ContextOverflowError, match="too long for the model's context of 100 tokens"):
        fit_to_context([{"role": "user", "content": "w " * 500}], words, count, 100, 10)


@pytest.mark.parametrize("turns", [100, 1000])
def test_cutting_a_long_history_renders_it_a_few_times_whatever_its_length(turns: int) -> None:
    """The cut is found from each message's own count, then checked: a handful of renders, not one per
    candidate cut (2,000 short messages once took minutes)."""
    renders = 0

    def counted_words(messages: Sequence[ChatMessage]) -> tuple[list[int], list[str]]:
        nonlocal renders
        renders += 1
        return words(messages)

    messages = conversation(turns, 3)
    prompt, _ = fit_to_context(messages, counted_words, count, 400, 50)
    assert renders <= 6
    # The same cut as trying every cut in turn: the first (on a user message) that brings the prompt and the
    # reply's room (50) down to half the context.
    system, rest = messages[:1], messages[1:]
    first_fitting = next(
        cut
        for cut, message in enumerate(rest)
        if message["role"] == "user" and len(words([*system, *rest[cut:]])[0]) + 50 <= 200
    )
    assert prompt.dropped_messages == first_fitting > 0
