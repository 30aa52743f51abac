"""``llamadesk bench``: figures measured on one loaded model in one run, so their ratios are fair.

- generation tokens/s through the engine's streaming path vs. raw ``Llama.generate`` (target >= 0.97). The two
  run back to back in pairs, in alternating order; on a shared 2-core machine one run's speed differs from the
  next by up to 10%, far more than the gap being measured, so the ratio is the median of the pairs' ratios,
  where a slow moment of the machine touches both halves of a pair alike;
- prompt evaluation tokens/s on a cold cache;
- time to first token at turn 10 of a conversation with ~1,500 tokens of history vs. turn 1 (target <= 1.5).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine
from app.core.llm.protocol import ChatEngine, local_engine
from app.core.modes import SamplingOptions

GENERATION_TOKENS = 200
# Generation pairs (engine and raw) and prompt evaluation runs.
REPEATS = 7
HISTORY_TARGET_TOKENS = 1500
TURNS = 10
TTFT_ROUNDS = 3

_STORY = (
    "Write a long, detailed story about a lighthouse keeper who finds a map in a bottle, "
    "and describe every step of the journey that follows."
)
_FILLER = (
    "Here is some background about my garden. The soil is sandy and dries quickly in summer, the north "
    "corner stays shaded until noon, and the tomatoes there grew slowly last year while the beans did well. "
    "I water twice a week and add compost in spring. "
)


@dataclass
class BenchResult:
    model: str
    threads: int
    engine_generation_tps: float
    raw_generation_tps: float
    generation_ratio: float
    prompt_eval_tps: float
    prompt_eval_tokens: int
    turn1_ttft_s: float
    turn10_ttft_s: float
    turn10_history_tokens: int
    turn10_evaluated_tokens: int
    ttft_ratio: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def report(self) -> str:
        return "\n".join(
            [
                f"Model: {self.model} ({self.threads} threads)",
                f"Generation, engine streaming path: {self.engine_generation_tps:.1f} tokens/s (median)",
                f"Generation, raw Llama.generate:    {self.raw_generation_tps:.1f} tokens/s (median)",
                f"  engine / raw = {self.generation_ratio:.3f} (median of {REPEATS} back-to-back pairs)   "
                "(target >= 0.97)",
                f"Prompt evaluation: {self.prompt_eval_tps:.1f} tokens/s over {self.prompt_eval_tokens} tokens",
                f"Time to first token, turn 1:  {self.turn1_ttft_s * 1000:.0f} ms",
                f"Time to first token, turn 10: {self.turn10_ttft_s * 1000:.0f} ms "
                f"({self.turn10_history_tokens} tokens of history, {self.turn10_evaluated_tokens} evaluated)",
                f"  turn 10 / turn 1 = {self.ttft_ratio:.3f}   (target <= 1.5)",
            ]
        )


def _raw_generation_tps(engine: Engine, prompt_tokens: list[int], n: int) -> float:
    engine.clear_cache()
    llama = engine.llama
    count = 0
    first = last = 0.0
    for _token in llama.generate(
        prompt_tokens, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1
    ):
        now = time.perf_counter()
        if count == 0:
            first = now
        last = now
        count += 1
        if count >= n:
            break
    return (count - 1) / (last - first) if count > 1 and last > first else 0.0


def _engine_generation_tps(engine: Engine, messages: list[ChatMessage], n: int) -> float:
    engine.clear_cache()
    reply = engine.chat(messages, SamplingOptions(temperature=0.0, max_tokens=n))
    reply.collect()
    return reply.stats.tokens_per_second


def run_benchmark(running: ChatEngine, progress: Callable[[str], None] | None = None) -> BenchResult:
    engine = local_engine(running)  # llama.cpp itself is measured: a server's engine answers with a sentence
    say = progress or (lambda _line: None)
    info = engine.model
    assert info is not None, "load a model before benchmarking"

    story: list[ChatMessage] = [
        {"role": "system", "content": "You are a storyteller."},
        {"role": "user", "content": _STORY},
    ]
    prompt_tokens, _ = engine.tokenize_messages(story)
    say("Measuring generation speed (engine vs. raw, alternating)...")
    engine_runs: list[float] = []
    raw_runs: list[float] = []
    measures: list[tuple[list[float], Callable[[], float]]] = [
        (raw_runs, lambda: _raw_generation_tps(engine, prompt_tokens, GENERATION_TOKENS)),
        (engine_runs, lambda: _engine_generation_tps(engine, story, GENERATION_TOKENS)),
    ]
    for index in range(REPEATS):
        for runs, measure in measures[:: -1 if index % 2 else 1]:
            runs.append(measure())
    pair_ratios = [mine / raw for mine, raw in zip(engine_runs, raw_runs, strict=True) if raw > 0]
    generation_ratio = statistics.median(pair_ratios) if pair_ratios else 0.0
    engine_tps = statistics.median(engine_runs)
    raw_tps = statistics.median(raw_runs)

    say("Measuring prompt evaluation...")
    long_prompt: list[ChatMessage] = [{"role": "user", "content": _FILLER * 12 + "Summarize this."}]
    tokens, _ = engine.tokenize_messages(long_prompt)
    llama = engine.llama
    eval_runs = []
    for _ in range(REPEATS):
        llama.reset()
        started = time.perf_counter()
        llama.eval(tokens)
        eval_runs.append(len(tokens) / (time.perf_counter() - started))
    prompt_tps = max(eval_runs)

    say(f"Measuring time to first token over a {TURNS}-turn conversation ({TTFT_ROUNDS} rounds)...")
    per_turn_history = HISTORY_TARGET_TOKENS // (TURNS - 1)
    filler_tokens = max(1, engine.count_tokens(_FILLER))
    repeats = max(1, (per_turn_history - 60) // filler_tokens)
    first_ttfts: list[float] = []
    last_ttfts: list[float] = []
    last_history = last_evaluated = 0
    for _round in range(TTFT_ROUNDS):
        engine.clear_cache()
        conversation: list[ChatMessage] = [
            {"role": "system", "content": "You are a helpful gardening assistant."}
        ]
        for turn in range(1, TURNS + 1):
            conversation.append(
                {
                    "role": "user",
                    "content": f"Question {turn}. " + _FILLER * repeats + "What should I plant next?",
                }
            )
            reply = engine.chat(conversation, SamplingOptions(temperature=0.0, max_tokens=48))
            text = reply.collect()
            conversation.append({"role": "assistant", "content": text})
            if turn == 1:
                first_ttfts.append(reply.stats.time_to_first_token)
            if turn == TURNS:
                last_ttfts.append(reply.stats.time_to_first_token)
                last_history = reply.stats.prompt_tokens
                last_evaluated = reply.stats.evaluated_tokens
    first_ttft = min(first_ttfts)
    last_ttft = min(last_ttfts)

    return BenchResult(
        model=info.name,
        threads=info.threads,
        engine_generation_tps=engine_tps,
        raw_generation_tps=raw_tps,
        generation_ratio=generation_ratio,
        prompt_eval_tps=prompt_tps,
        prompt_eval_tokens=len(tokens),
        turn1_ttft_s=first_ttft,
        turn10_ttft_s=last_ttft,
        turn10_history_tokens=last_history,
        turn10_evaluated_tokens=last_evaluated,
        ttft_ratio=last_ttft / first_ttft if first_ttft else 0.0,
    )
