"""How the engine picks each token: llama.cpp's sampler chain built per request, and the log-probabilities a
client may ask for.

The chain is llama.cpp's own (``llama_sampler_chain``): logit bias, penalties, then greedy or
top-k/top-p/min-p/temperature and a seeded draw, all in C. It mirrors the chain ``Llama.generate`` builds, plus
what that method cannot take: a logit bias by token id, and a grammar, kept beside the chain (see
``TokenSampler``) and refused with a sentence when llama.cpp cannot parse it (``llama_sampler_init_grammar``
returns NULL, which the bindings would add to a chain as is).

A request's seed lives in its own chain only, so a seeded request never decides the draws of the next one.
"""

from __future__ import annotations

import ctypes
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from app.core.errors import UserError
from app.core.modes import SamplingOptions

PENALTY_WINDOW = (
    64  # tokens the repeat/frequency/presence penalties look back over (llama-cpp-python's default)
)
MAX_TOP_LOGPROBS = 20  # OpenAI's limit on alternatives per token

# Prompt-lookup drafting (app.core.llm.drafting) for a reply: "auto", the engine's measured default; "lookup",
# wherever it can apply; "off". It never applies with a grammar or tools.
DraftMode = Literal["auto", "lookup", "off"]


class GrammarRefused(UserError):
    """llama.cpp could not parse a grammar (built from a schema or a tool list)."""


@dataclass(frozen=True)
class ReplyOptions:
    """What a request asks of a reply beyond sampling. The window uses the defaults; the API sets them."""

    stops: tuple[str, ...] = ()  # the caller's stop strings, besides the chat template's own
    grammar: str | None = None  # GBNF the reply must follow (structured output, forced tool calls)
    # Regular expressions that make the grammar lazy: it waits until the reply matches one (a tool call has
    # begun, with tool_choice "auto") and holds the reply to it from the pattern's group on.
    grammar_triggers: tuple[str, ...] = ()
    logit_bias: Mapping[int, float] = field(default_factory=dict)  # token id -> added to its logit
    top_logprobs: int | None = None  # None: no log-probabilities; N: the chosen token's and N alternatives
    # False: a history longer than the context is refused (ContextLimitError), as OpenAI's API does, instead
    # of cut to fit, as a conversation in the window is.
    cut_history: bool = True
    # Tools in OpenAI's shape, for a chat template that lays them out itself (Llama 3.x, Qwen, Mistral).
    tools: list[dict[str, Any]] | None = None
    # True: the max_tokens asked for was the client's own, so a prompt leaving less room is refused rather than
    # given a shorter reply (OpenAI's rule); False: a default that shrinks to the room there is.
    max_tokens_required: bool = False
    # Per request, not per load: the same model serves copying work (drafting pays) and free writing (it may
    # not), and a server forces it for its requests (``llamadesk serve --draft``).
    draft: DraftMode = "auto"


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its bytes, its log-probability, and the most likely alternatives at its place."""

    token: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...] = ()


class TokenSampler:
    """Draws each token of one reply with llama.cpp's sampler chain, and a grammar when the request has one.

    With a grammar, it goes as llama.cpp's own server does: the token is drawn without the grammar first and
    kept if the grammar accepts it, and only otherwise is the grammar applied to the whole vocabulary (hundreds
    of milliseconds per token for a 262k-token vocabulary) and the token drawn again. Internals used:
    ``Llama._ctx`` (the raw context) and ``Llama._model`` (the vocabulary), and ``_internals.LlamaSampler``."""

    def __init__(self, llama: Any, sampling: SamplingOptions, options: ReplyOptions) -> None:
        from llama_cpp import _internals

        self._llama = llama
        self._n_vocab = int(llama.n_vocab())
        sampler_chain: Any = _internals.LlamaSampler  # untyped bindings
        self._chain = sampler_chain()
        self._grammar: Any = None
        try:
            self._fill_chain(sampling, options)
            if options.grammar is not None:
                self._grammar = _grammar_sampler(llama, options.grammar, options.grammar_triggers)
                if not self._grammar:
                    raise GrammarRefused(
                        "llama.cpp could not parse the grammar made for this request; simplify the schema or "
                        "tools."
                    )
        except BaseException:
            self.close()
            raise
        self._candidates: Any = None  # the whole vocabulary's candidates, made on first use

    def _fill_chain(self, sampling: SamplingOptions, options: ReplyOptions) -> None:
        chain = self._chain
        if options.logit_bias:
            outside = [token for token in options.logit_bias if not 0 <= token < self._n_vocab]
            if outside:
                raise UserError(
                    f"logit_bias names token {outside[0]}, which this model does not have (its tokens are "
                    f"numbered 0 to {self._n_vocab - 1})."
                )
            chain.add_logit_bias(self._n_vocab, dict(options.logit_bias))
        chain.add_penalties(
            n_vocab=self._n_vocab,
            penalty_last_n=PENALTY_WINDOW,
            penalty_repeat=sampling.repeat_penalty,
            penalty_freq=sampling.frequency_penalty,
            penalty_present=sampling.presence_penalty,
        )
        seed = sampling.seed if sampling.seed is not None else random.getrandbits(32)
        if sampling.temperature <= 0:
            chain.add_greedy()
        else:
            chain.add_top_k(sampling.top_k)
            chain.add_top_p(sampling.top_p, 1)
            chain.add_min_p(sampling.min_p, 1)
            chain.add_temp(sampling.temperature)
            chain.add_dist(seed)

    def sample(self, index: int = -1) -> int:
        """The next token, from the logits of the batch's row ``index`` (-1: the last token evaluated); accepted
        by the chain and grammar. A batch of several sequences (or of drafted tokens) has a row per position
        whose logits were asked for."""
        import llama_cpp

        ctx = self._llama._ctx.ctx
        if self._grammar is None:
            return int(llama_cpp.llama_sampler_sample(self._chain.sampler, ctx, index))
        candidates = self._whole_vocabulary(ctx, index)
        llama_cpp.llama_sampler_apply(self._chain.sampler, ctypes.byref(candidates))
        token = int(candidates.data[candidates.selected].id)
        if not self._grammar_allows(token):
            candidates = self._whole_vocabulary(ctx, index)
            llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(candidates))
            llama_cpp.llama_sampler_apply(self._chain.sampler, ctypes.byref(candidates))
            chosen = candidates.data[candidates.selected]
            if not math.isfinite(chosen.logit):  # llama.cpp would abort the process on accepting it
                raise UserError(
                    "The reply's grammar allows no token at this point, so the reply was ended; check the JSON "
                    "schema or tools of the request."
                )
            token = int(chosen.id)
        llama_cpp.llama_sampler_accept(self._grammar, token)
        llama_cpp.llama_sampler_accept(self._chain.sampler, token)
        return token

    def _whole_vocabulary(self, ctx: Any, index: int) -> Any:
        """Every token with its logit, as llama.cpp's samplers take them (filled by numpy, not per token)."""
        import llama_cpp
        import numpy as np

        if self._candidates is None:
            rows = np.zeros(self._n_vocab, dtype=[("id", np.int32), ("logit", np.float32), ("p", np.float32)])
            self._rows = rows
            self._ids = np.arange(self._n_vocab, dtype=np.int32)
            self._candidates = llama_cpp.llama_token_data_array(
                data=rows.ctypes.data_as(llama_cpp.llama_token_data_p),
                size=self._n_vocab,
                selected=-1,
                sorted=False,
            )
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(self._n_vocab,))
        self._rows["id"] = self._ids
        self._rows["logit"] = logits
        self._rows["p"] = 0.0
        self._candidates.size = self._n_vocab
        self._candidates.selected = -1
        self._candidates.sorted = False
        return self._candidates

    def _grammar_allows(self, token: int) -> bool:
        import llama_cpp

        single = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 1.0, 0.0))
        probe = llama_cpp.llama_token_data_array(data=single, size=1, selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(probe))
        return bool(math.isfinite(single[0].logit))

    def close(self) -> None:
        import llama_cpp

        if self._grammar:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None
        self._chain.close()


def _grammar_sampler(llama: Any, grammar: str, triggers: tuple[str, ...]) -> Any:
    """llama.cpp's grammar sampler (None, as a NULL pointer, when the grammar does not parse); lazy when
    ``triggers`` are given."""
    import llama_cpp

    vocab = llama._model.vocab
    if not triggers:
        return llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
    patterns = (ctypes.c_char_p * len(triggers))(*(pattern.encode("utf-8") for pattern in triggers))
    no_tokens = (llama_cpp.llama_token * 1)()
    return llama_cpp.llama_sampler_init_grammar_lazy_patterns(
        vocab, grammar.encode("utf-8"), b"root", patterns, len(triggers), no_tokens, 0
    )


def token_logprob(llama: Any, token: int, top: int, index: int = -1) -> TokenLogprob:
    """``token``'s log-probability under the model's distribution at the place it was drawn (before penalties,
    bias and grammar, as OpenAI reports them), with the ``top`` most likely tokens there.

    Read before the next evaluation replaces the logits. Internal used: ``Llama._ctx`` (the raw context)."""
    import llama_cpp
    import numpy as np

    row = llama_cpp.llama_get_logits_ith(llama._ctx.ctx, index)
    logits = np.ctypeslib.as_array(row, shape=(int(llama.n_vocab()),)).astype(np.float64)
    peak = float(logits.max())
    log_total = peak + math.log(float(np.exp(logits - peak).sum()))
    alternatives: tuple[tuple[bytes, float], ...] = ()
    if top > 0:
        best = np.argpartition(-logits, min(top, len(logits) - 1))[:top]
        best = best[np.argsort(-logits[best])]
        alternatives = tuple((token_bytes(llama, int(t)), float(logits[t]) - log_total) for t in best)
    return TokenLogprob(token_bytes(llama, token), float(logits[token]) - log_total, alternatives)


def token_bytes(llama: Any, token: int) -> bytes:
    """A token's own bytes (special tokens as their text)."""
    return bytes(llama.detokenize([token], special=True))
