"""Which messages go to the model: the context cut, a pure function over a tokenizer.

When a conversation outgrows the context, the oldest turns are dropped in one large block (the system prompt
and pinned messages stay), down to half the context, and the same cut is kept on later turns: the prompt's start
then stays the same for many turns, so llama.cpp's prefix cache keeps serving it instead of re-evaluating a
prompt that shifts by one turn every time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypedDict

from app.core.errors import ContextOverflowError


class ChatMessage(TypedDict, total=False):
    role: str  # "system" | "user" | "assistant"
    content: str
    pinned: bool  # kept in the context when old turns are dropped, like the system prompt


# Renders messages into the model's tokens (ending with the assistant's turn opening) and its stop strings.
Tokenizer = Callable[[Sequence[ChatMessage]], tuple[list[int], list[str]]]


@dataclass(frozen=True)
class ContextCut:
    """Which old messages were left out last time, so the next turn keeps the same cut and the cache."""

    dropped_digest: str = ""
    dropped_count: int = 0


@dataclass(frozen=True)
class Prompt:
    tokens: list[int]
    stop: list[str]
    dropped_messages: int
    max_tokens: int  # what is left of the reply's budget once the prompt is in the context


def fit_to_context(
    messages: Sequence[ChatMessage],
    tokenize: Tokenizer,
    count_tokens: Callable[[str], int],
    context_size: int,
    max_tokens: int,
    previous: ContextCut = ContextCut(),
) -> tuple[Prompt, ContextCut]:
    """Fit ``messages`` into ``context_size`` tokens with room for a reply; returns the prompt and the cut made.

    Raises ContextOverflowError when even the newest message alone does not fit.
    """
    if not messages:
        raise ValueError("a conversation needs at least one message")
    reserve = max(1, min(max_tokens, context_size // 4))

    def kept(index: int, message: ChatMessage) -> bool:
        return bool(message.get("pinned")) or (message["role"] == "system" and index == 0)

    kept_first = [m for i, m in enumerate(messages) if kept(i, m)]
    droppable = [m for i, m in enumerate(messages) if not kept(i, m)]
    last = len(droppable) - 1  # the newest message is never dropped

    def attempt(cut: int) -> tuple[list[int], list[str]]:
        return tokenize([*kept_first, *droppable[cut:]])

    def fits(tokens: list[int], limit: int) -> bool:
        return len(tokens) + reserve <= limit

    # Cuts fall on user messages, so a reply never appears without its question.
    cuts = [i for i, m in enumerate(droppable) if m["role"] == "user" and i <= last] or [max(0, last)]
    if cuts[0] != 0:
        cuts.insert(0, 0)

    start = 0
    if (
        previous.dropped_count
        and previous.dropped_count <= last
        and message_digest(droppable[: previous.dropped_count]) == previous.dropped_digest
    ):
        start = previous.dropped_count
    tokens, stops = attempt(start)
    cut = start
    if not fits(tokens, context_size):
        low_water = context_size // 2
        chosen: tuple[int, list[int], list[str]] | None = None
        for candidate in (c for c in cuts if c > start):
            candidate_tokens, candidate_stops = attempt(candidate)
            if fits(candidate_tokens, low_water):
                chosen = (candidate, candidate_tokens, candidate_stops)
                break
            if fits(candidate_tokens, context_size) and chosen is None:
                chosen = (candidate, candidate_tokens, candidate_stops)
        if chosen is None:
            newest = count_tokens(droppable[last]["content"]) if droppable else 0
            raise ContextOverflowError(
                f"This message is about {newest} tokens, too long for the model's context of {context_size} "
                "tokens with room for a reply. Shorten it, attach it as a document instead, or raise the "
                "context size in Settings."
            )
        cut, tokens, stops = chosen
    room = context_size - len(tokens)
    prompt = Prompt(tokens, stops, cut, max(1, min(max_tokens, room)))
    return prompt, ContextCut(message_digest(droppable[:cut]), cut)


def message_digest(messages: Sequence[ChatMessage]) -> str:
    """Identifies a run of messages by role and content (the cut kept from one turn to the next)."""
    hasher = hashlib.sha256()
    for message in messages:
        hasher.update(message["role"].encode())
        hasher.update(b"\0")
        hasher.update(message["content"].encode("utf-8", "replace"))
        hasher.update(b"\0")
    return hasher.hexdigest()
