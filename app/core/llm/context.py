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
from typing import Any, TypedDict

from app.core.errors import ContextLimitError, ContextOverflowError


class ChatMessage(TypedDict, total=False):
    role: str  # "system" | "user" | "assistant", and "tool" for a tool's result (the API's tool calls)
    content: str
    pinned: bool  # kept in the context when old turns are dropped, like the system prompt
    # An assistant's calls of the request's tools, and a tool result's call id and function name (OpenAI's shape)
    tool_calls: list[dict[str, Any]]
    tool_call_id: str
    name: str


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


def whole_prompt(
    tokens: list[int],
    stops: list[str],
    max_tokens: int,
    *,
    limit: int,
    max_tokens_required: bool,
    space: str,
    remedy: str,
    dropped: int = 0,
) -> Prompt:
    """``tokens`` as the prompt, all of them, in ``limit`` tokens: refused with the figures (ContextLimitError, the
    API's 400 ``context_length_exceeded``) when they do not fit, or leave no room for a ``max_tokens`` the caller
    required. ``space`` names the room ("the model's context"), ``remedy`` what else makes more of it."""
    if len(tokens) >= limit:
        raise ContextLimitError(
            f"The prompt is {len(tokens):,} tokens, and {space} holds {limit:,}: shorten it (in a conversation, "
            f"leave out older messages) or {remedy}.",
            prompt_tokens=len(tokens),
            limit=limit,
        )
    if max_tokens_required and len(tokens) + max_tokens > limit:
        raise ContextLimitError(
            f"The prompt ({len(tokens):,} tokens) and max_tokens ({max_tokens:,}) together need "
            f"{len(tokens) + max_tokens:,} tokens, more than the {limit:,} of {space}: lower max_tokens, shorten "
            f"the prompt or {remedy}.",
            prompt_tokens=len(tokens),
            limit=limit,
        )
    return Prompt(tokens, stops, dropped, max(1, min(max_tokens, limit - len(tokens))))


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
        candidates = [c for c in cuts if c > start]
        guess = _estimated_cuts(kept_first, droppable, candidates, tokens, count_tokens)
        rendered: dict[int, tuple[list[int], list[str]]] = {}

        def render(index: int) -> tuple[list[int], list[str]]:
            if index not in rendered:
                rendered[index] = attempt(candidates[index])
            return rendered[index]

        def first_fitting(limit: int) -> int | None:
            """The first candidate whose prompt fits ``limit``: from the estimate, a few renders either way
            (fewer tokens the more is dropped), so the cut costs about one render, not one per candidate."""
            index = guess(limit - reserve)
            if fits(render(index)[0], limit):
                while index > 0 and fits(render(index - 1)[0], limit):
                    index -= 1
                return index
            while index + 1 < len(candidates):
                index += 1
                if fits(render(index)[0], limit):
                    return index
            return None

        chosen = first_fitting(context_size // 2) if candidates else None
        if chosen is None and candidates:
            chosen = first_fitting(context_size)
        if chosen is None:
            newest = count_tokens(droppable[last]["content"]) if droppable else 0
            raise ContextOverflowError(
                f"This message is about {newest} tokens, too long for the model's context of {context_size} "
                "tokens with room for a reply. Shorten it, attach it as a document instead, or raise the "
                "context size in Settings."
            )
        cut = candidates[chosen]
        tokens, stops = render(chosen)
    room = context_size - len(tokens)
    prompt = Prompt(tokens, stops, cut, max(1, min(max_tokens, room)))
    return prompt, ContextCut(message_digest(droppable[:cut]), cut)


def _estimated_cuts(
    kept_first: Sequence[ChatMessage],
    droppable: Sequence[ChatMessage],
    candidates: Sequence[int],
    whole: list[int],
    count_tokens: Callable[[str], int],
) -> Callable[[int], int]:
    """Estimates which candidate cut first brings the prompt under a number of tokens, from each message's own
    tokens and the template's share spread evenly over the messages: one pass over the conversation."""
    sizes = [count_tokens(m["content"]) for m in droppable]
    kept = sum(count_tokens(m["content"]) for m in kept_first)
    messages = len(kept_first) + len(droppable)
    overhead = max(0.0, (len(whole) - kept - sum(sizes)) / max(1, messages))
    after = [0.0] * (len(droppable) + 1)  # tokens of the messages from each index on, with their share
    for index in range(len(droppable) - 1, -1, -1):
        after[index] = after[index + 1] + sizes[index] + overhead
    base = kept + overhead * len(kept_first)

    def guess(limit: int) -> int:
        for index, cut in enumerate(candidates):
            if base + after[cut] <= limit:
                return index
        return max(0, len(candidates) - 1)

    return guess


def message_digest(messages: Sequence[ChatMessage]) -> str:
    """Identifies a run of messages by role and content (the cut kept from one turn to the next)."""
    hasher = hashlib.sha256()
    for message in messages:
        hasher.update(message["role"].encode())
        hasher.update(b"\0")
        hasher.update(message["content"].encode("utf-8", "replace"))
        hasher.update(b"\0")
    return hasher.hexdigest()
