"""``llamadesk bench``'s saved-state cases, measured on the engine thread with the loaded model.

- Reopen: a conversation of over 3,000 tokens is answered and its state saved; the model is unloaded and loaded
  again (as after a restart); the follow-up's time to first token is measured with the saved state (counted from
  the request, reading the file included) and cold. Goal: restored / cold <= 0.15.
- Switch: conversation A, then B, then A again: A's follow-up (its state restored from memory) against a turn that
  stays in one conversation. Goal: <= 1.5.

The states go to a scratch folder, not the person's cache, and the engine's own cache is put back afterwards.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine, ReplyStats
from app.core.llm.load_options import LoadOptions
from app.core.llm.protocol import ChatEngine, local_engine
from app.core.llm.saved_state_store import SUFFIX, SavedStateStore
from app.core.modes import SamplingOptions

REOPEN_TARGET_TOKENS = 3000
SWITCH_TARGET_TOKENS = 1000
REOPEN_CONTEXT = 4096
GREEDY = SamplingOptions(temperature=0.0, max_tokens=8)

_PARAGRAPHS = (
    "The lighthouse on the northern cape was built in 1871 from granite quarried two miles inland, and its "
    "keepers logged every ship, every storm and every repair in leather-bound books that still survive. ",
    "Our allotment has heavy clay soil that stays wet until late spring; the raised beds by the fence drain "
    "better, and last year the potatoes there did well while the carrots split after the August rain. ",
)


@dataclass
class ReopenResult:
    reopen_history_tokens: int
    reopen_cold_ttft_s: float
    reopen_restored_ttft_s: float
    reopen_ratio: float
    reopen_evaluated_cold: int
    reopen_evaluated_restored: int
    reopen_state_bytes: int
    reopen_save_pause_s: float  # the engine thread's pause to copy the state after the reply (goal <= 0.1)
    switch_same_ttft_s: float
    switch_back_ttft_s: float
    switch_ratio: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def report(self) -> str:
        return "\n".join(
            [
                f"Reopen after a restart ({self.reopen_history_tokens} tokens of history): first token after "
                f"{self.reopen_restored_ttft_s * 1000:.0f} ms with the saved state "
                f"({self.reopen_evaluated_restored} evaluated, {self.reopen_state_bytes / 1e6:.1f} MB read), "
                f"{self.reopen_cold_ttft_s * 1000:.0f} ms cold ({self.reopen_evaluated_cold} evaluated)",
                f"  restored / cold = {self.reopen_ratio:.3f}   (target <= 0.15)",
                f"  saving it paused the engine for {self.reopen_save_pause_s * 1000:.0f} ms   (target <= 100 ms)",
                f"Switch A, B, A: A's follow-up {self.switch_back_ttft_s * 1000:.0f} ms, a turn in one "
                f"conversation {self.switch_same_ttft_s * 1000:.0f} ms",
                f"  switched / same = {self.switch_ratio:.3f}   (target <= 1.5)",
            ]
        )


def _conversation(engine: Engine, paragraph: str, target_tokens: int) -> list[ChatMessage]:
    """A conversation of about ``target_tokens``, in turns of ~500 tokens with short answers."""
    per_turn = max(1, 480 // max(1, engine.count_tokens(paragraph)))
    messages: list[ChatMessage] = [{"role": "system", "content": "You are a helpful assistant."}]
    turn = 0
    while True:
        turn += 1
        messages.append({"role": "user", "content": f"Part {turn}. " + paragraph * per_turn + "Noted?"})
        tokens, _ = engine.tokenize_messages(messages)
        if len(tokens) >= target_tokens:
            return messages
        messages.append({"role": "assistant", "content": f"Noted part {turn}."})


@dataclass
class _Turn:
    messages: list[ChatMessage]  # the conversation with the reply
    stats: ReplyStats
    save_pause_s: float  # how long saving the state held the engine thread


def _ask(engine: Engine, messages: list[ChatMessage], key: str | None) -> _Turn:
    """One reply, then the engine saves its state as it does when idle."""
    reply = engine.chat(messages, GREEDY, state_key=key)
    text = reply.collect()
    started = time.perf_counter()
    engine.idle()
    pause = time.perf_counter() - started
    return _Turn([*messages, {"role": "assistant", "content": text}], reply.stats, pause)


def run_reopen_benchmark(running: ChatEngine, progress: Callable[[str], None] | None = None) -> ReopenResult:
    # Saved states are this computer's: a server's engine answers with a sentence.
    engine = local_engine(running)
    say = progress or (lambda _line: None)
    info = engine.model
    assert info is not None, "load a model before benchmarking"
    loaded_with = engine.load_options or LoadOptions()
    options = dataclasses.replace(loaded_with, context_size=max(info.context_size, REOPEN_CONTEXT))
    own_cache = engine.states.cache
    with tempfile.TemporaryDirectory(prefix="llamadesk-bench-states-") as scratch:
        cache = SavedStateStore(Path(scratch) / "states")
        engine.states.cache = cache
        try:
            engine.load(info.path, options)
            say(f"Measuring a reopened {REOPEN_TARGET_TOKENS:,}-token conversation (cold and restored)...")
            history = _conversation(engine, _PARAGRAPHS[0], REOPEN_TARGET_TOKENS)
            built = _ask(engine, history, "bench-reopen")
            assert cache.flush(120)
            engine.unload()  # as the app quits: the state is on disk, nothing in memory
            assert cache.flush(120)
            state_bytes = max((p.stat().st_size for p in cache.folder.glob(f"*{SUFFIX}")), default=0)
            engine.load(info.path, options)
            follow_up = [*built.messages, ChatMessage(role="user", content="Summarize it in a line.")]
            restored = _ask(engine, follow_up, "bench-reopen").stats
            engine.clear_cache()
            cold = _ask(engine, follow_up, None).stats

            say("Measuring a switch between conversations (A, B, A)...")
            engine.clear_cache()
            first = _conversation(engine, _PARAGRAPHS[0], SWITCH_TARGET_TOKENS)
            second = _conversation(engine, _PARAGRAPHS[1], SWITCH_TARGET_TOKENS)
            first = _ask(engine, first, "bench-a").messages
            same = _ask(engine, [*first, ChatMessage(role="user", content="And the next part?")], "bench-a")
            _ask(engine, second, "bench-b")
            back = _ask(
                engine, [*same.messages, ChatMessage(role="user", content="Anything else?")], "bench-a"
            )
            engine.unload()
            assert cache.flush(120)
        finally:
            engine.states.cache = own_cache
            engine.load(info.path, loaded_with)
    cold_ttft, restored_ttft = cold.time_to_first_token, restored.time_to_first_token
    return ReopenResult(
        reopen_history_tokens=restored.prompt_tokens,
        reopen_cold_ttft_s=cold_ttft,
        reopen_restored_ttft_s=restored_ttft,
        reopen_ratio=restored_ttft / cold_ttft if cold_ttft else 0.0,
        reopen_evaluated_cold=cold.evaluated_tokens,
        reopen_evaluated_restored=restored.evaluated_tokens,
        reopen_state_bytes=state_bytes,
        reopen_save_pause_s=built.save_pause_s,
        switch_same_ttft_s=same.stats.time_to_first_token,
        switch_back_ttft_s=back.stats.time_to_first_token,
        switch_ratio=(
            back.stats.time_to_first_token / same.stats.time_to_first_token
            if same.stats.time_to_first_token
            else 0.0
        ),
    )
