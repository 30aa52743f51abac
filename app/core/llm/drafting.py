"""Prompt-lookup drafting: speculative decoding with no draft model.

A reply that repeats its input (a summary quoting its document, code given back with a variable renamed, "rewrite
this") can be guessed ahead from the text already there: when the last few tokens also occur earlier in the prompt
or the reply, what followed them there is a likely continuation. ``PromptLookupDrafter`` proposes those tokens;
``DraftVerifier`` evaluates the sampled token and the drafted ones in one batch, with logits for every row, and
the engine samples the rows in order: a drafted token is kept only if the token sampled from the target's own
distribution at its place equals it, and the first mismatch's sampled token is kept instead of the rest. For a
deterministic (point-mass) draft that is exact speculative sampling: the reply follows the same distribution as
token-by-token decoding, and at temperature 0 the same tokens, as far as the batched logits equal the single-token
ones (see ``app.bench.drafting`` for where a CPU's matrix kernels make them differ).

llama-cpp-python ships ``llama_cpp.llama_speculative.LlamaPromptLookupDecoding``, which rescans the whole history
with numpy for every draft and takes the first (oldest) match. The index here is updated per token (a dict of the
n-grams' latest continuations) and takes the most recent, longest match, which in a rewrite is the line being
copied rather than the first line that happens to share two tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.core.llm.bindings import evaluate_rows, forget_after
from app.core.llm.sampling import ReplyOptions

LONGEST_NGRAM = 4  # the longest suffix looked up; longer matches say little more and cost a lookup each
# Shorter matches (every "the", every indent) predict poorly, and on a CPU a missed draft is dear: a batch of
# 2 rows with logits for both cost ~2.3x one row for SmolLM2 and ~3.5x for Gemma (its 262k-token output layer
# runs once per row), 8 rows ~4.5x and ~5.7x (1 thread, a 2-core AMD EPYC with AVX-512).
SHORTEST_NGRAM = 3
FIRST_DRAFT = 8  # tokens drafted at first; the length then follows how many were accepted
LONGEST_DRAFT = 16  # a CPU batch of 17 rows costs about as much per row as the prompt's: no gain beyond
SHORTEST_DRAFT = 3  # after a miss: fewer rows would cost nearly as much as these and rarely pay
# Tokens without drafts after misses in a row (doubling from 2), for text that copies nothing.
LONGEST_PAUSE = 32


class PromptLookupDrafter:
    """Drafts the continuation of the text so far from its own earlier n-grams.

    The index maps each n-gram (``SHORTEST_NGRAM`` to ``LONGEST_NGRAM`` tokens) to where the token after its most
    recent occurrence stands. It is updated as tokens arrive, so a draft costs a few dict lookups however long the
    prompt is."""

    def __init__(self, tokens: Iterable[int], longest_draft: int = LONGEST_DRAFT) -> None:
        self._tokens: list[int] = []
        self._index: dict[tuple[int, ...], int] = {}
        self._longest_draft = max(1, longest_draft)
        self._length = min(FIRST_DRAFT, self._longest_draft)
        self._pause = 0  # tokens to come before the next draft
        self._next_pause = 2  # the pause after the next draft of which nothing is taken
        for token in tokens:
            self.add(token)

    def add(self, token: int) -> None:
        """One more token of the text: the n-grams ending just before it now have it as their continuation."""
        tokens = self._tokens
        end = len(tokens)
        for size in range(SHORTEST_NGRAM, LONGEST_NGRAM + 1):
            if size > end:
                break
            self._index[tuple(tokens[end - size : end])] = end
        tokens.append(token)
        if self._pause:
            self._pause -= 1

    def draft(self, limit: int) -> list[int]:
        """Up to ``limit`` tokens likely to come next (none when the text's end occurred nowhere before)."""
        limit = min(limit, self._length)
        if limit <= 0 or self._pause:
            return []
        tokens = self._tokens
        for size in range(min(LONGEST_NGRAM, len(tokens)), SHORTEST_NGRAM - 1, -1):
            start = self._index.get(tuple(tokens[-size:]))
            if start is not None:
                return tokens[start : start + limit]
        return []

    def verified(self, drafted: int, accepted: int) -> None:
        """How a draft fared: drafts grow while they are taken whole and shrink to what was taken otherwise;
        after a draft of which nothing was taken, drafting pauses (longer after each such miss in a row), so
        text that copies nothing runs nearly as it would without drafts."""
        if not drafted:
            return
        if accepted == drafted:
            self._length = min(self._longest_draft, self._length + 4)
        else:
            self._length = min(self._longest_draft, max(SHORTEST_DRAFT, accepted + 1))
        if accepted:
            self._next_pause = 2
        else:
            self._pause = self._next_pause
            self._next_pause = min(LONGEST_PAUSE, self._next_pause * 2)


@dataclass
class DraftStats:
    """What drafting did in one reply: tokens proposed, how many of them the model's own sampling kept, and how
    many batches verified them."""

    drafted: int = 0
    accepted: int = 0
    batches: int = 0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


class DraftVerifier:
    """Evaluates a sampled token with a draft behind it and tracks which batch rows are still to be checked.

    After ``evaluate(token, draft)`` the cache holds ``token`` and the draft; row 0's logits give the token after
    ``token``. The engine samples ``row``; ``take(sampled)`` says whether the sampled token was the drafted one
    (its evaluation is already in the cache: the next row is sampled without evaluating anything) or not (the
    cells of the rejected draft are removed, so the cache holds exactly the tokens kept)."""

    def __init__(self, llama: Any, stats: DraftStats, drafter: PromptLookupDrafter) -> None:
        self._llama = llama
        self._stats = stats
        self._drafter = drafter
        self._pending: list[int] = []  # drafted tokens evaluated but not yet checked, in row order
        self._drafted = 0  # the size of the draft being checked
        self.row = -1  # the batch row the next token is sampled from (-1: the last token evaluated)

    def evaluate(self, token: int, draft: list[int]) -> None:
        """Evaluate ``token`` followed by ``draft``, logits for every row (a plain ``Llama.eval`` without one)."""
        if not draft:
            self._llama.eval([token])
            self.row = -1
            return
        evaluate_rows(self._llama, [token, *draft])
        self._pending = list(draft)
        self._drafted = len(draft)
        self._stats.drafted += len(draft)
        self._stats.batches += 1
        self.row = 0

    def take(self, sampled: int) -> bool:
        """True when ``sampled`` (drawn from ``row``) is the drafted token at that place: the reply goes on from
        the next row with nothing to evaluate. False otherwise (or with no draft): evaluate ``sampled`` next."""
        if self._pending and self._pending[0] == sampled:
            self._pending.pop(0)
            self._stats.accepted += 1
            self.row += 1
            if not self._pending:  # all taken: the last row gives the token after the draft
                self._drafter.verified(self._drafted, self._drafted)
            return True
        self.discard()
        return False

    def discard(self) -> None:
        """Drop the drafted tokens not (yet) taken from the cache: at a mismatch, and when the reply ends."""
        if self._pending:
            self._drafter.verified(self._drafted, self._drafted - len(self._pending))
            forget_after(self._llama, int(self._llama.n_tokens) - len(self._pending))
            self._pending = []
        self.row = -1


def drafting_applies(options: ReplyOptions) -> bool:
    """Whether a reply is drafted. Never with a grammar (its sampler holds a parse state that a rejected draft
    would have to unwind) nor with tools (the reply may switch to a call under a lazy grammar); otherwise unless
    asked off. "auto" drafts: a draft is only made where the text's end repeats earlier text, it shrinks when
    drafts fail and pauses after misses, so a reply that copies nothing loses little (the measurements behind
    this are ``llamadesk bench --draft``'s, written down in the module docstring of ``app.bench.drafting``)."""
    if options.grammar is not None or options.tools:
        return False
    return options.draft != "off"
