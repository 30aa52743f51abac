"""``llamadesk bench``: figures measured on one loaded model in one run, so their ratios are fair.

- generation tokens/s through the engine's streaming path vs. raw ``Llama.generate`` (target >= 0.97). The two
  run back to back in pairs, in alternating order; on a shared 2-core machine one run's speed differs from the
  next by up to 10%, far more than the gap being measured, so the ratio is the median of the pairs' ratios,
  where a slow moment of the machine touches both halves of a pair alike;
- prompt evaluation tokens/s on a cold cache, over 512 tokens as llama-bench's pp512;
- time to first token at turn 10 of a conversation with ~1,500 tokens of history vs. turn 1 (target <= 1.5);
- beside each generation figure, the physical limit: this machine's memory read bandwidth, measured here, over the
  bytes of weights a token reads (app/bench/bandwidth.py), and the share of it reached;
- llama.cpp's own ``llama-bench`` (built from the same llama.cpp by installers/build_llama_server.py) on the same
  model with the same threads and batch sizes: tg128 and pp512, flash attention off (as the engine loads) and on,
  in rounds that alternate with the engine's own generation over 128 tokens and evaluation of 512 tokens; the
  ratios ours/native are the medians of the rounds' ratios, for the same reason as above. llama-bench generates
  from an empty context and without sampling, the engine after a short prompt and with its sampler: what the
  engine adds is in the ratio, on purpose.
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.bench.bandwidth import (
    GenerationBound,
    MemoryBandwidth,
    WeightsPerToken,
    measure_bandwidth,
    weights_read_per_token,
)
from app.bench.serve import native_tool_path
from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine
from app.core.llm.gguf_check import read_gguf
from app.core.llm.protocol import ChatEngine, local_engine
from app.core.modes import SamplingOptions

log = logging.getLogger(__name__)

GENERATION_TOKENS = 200
# Generation pairs (engine and raw) and prompt evaluation runs.
REPEATS = 7
HISTORY_TARGET_TOKENS = 1500
TURNS = 10
TTFT_ROUNDS = 3
# llama-bench's standard tests, tg128 and pp512; our prompt evaluation is measured over as many tokens.
NATIVE_GENERATION_TOKENS = 128
PROMPT_EVAL_TOKENS = 512
NATIVE_ROUNDS = 3
NATIVE_TIMEOUT_S = 600.0
NATIVE_BENCH_MISSING = (
    "llama.cpp's native llama-bench was not found at {path}, so the native figures were not measured: build it "
    "with python installers/build_llama_server.py (several minutes) and run the benchmark again."
)
NATIVE_BENCH_FAILED = (
    "llama.cpp's native llama-bench failed ({reason}), so the native figures were not measured: the log has its "
    "output; rebuild it with python installers/build_llama_server.py --force if it is out of date."
)

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
class NativeComparison:
    """llama.cpp's llama-bench beside the engine, in rounds that alternate; tokens/s are medians over the rounds,
    ratios the medians of the rounds' ratios (ours / native)."""

    tool: str
    rounds: int
    batch_size: int
    ubatch_size: int
    ours_generation_tps: float  # engine streaming path, NATIVE_GENERATION_TOKENS tokens
    ours_prompt_tps: float  # PROMPT_EVAL_TOKENS tokens evaluated on an empty cache
    native_generation_tps: float  # tg128, flash attention off (as the engine loads)
    native_generation_fa_tps: float  # tg128, flash attention on
    native_prompt_tps: float  # pp512, flash attention off
    native_prompt_fa_tps: float  # pp512, flash attention on
    generation_ratio: float
    generation_ratio_fa: float
    prompt_ratio: float
    prompt_ratio_fa: float


@dataclass
class BenchResult:
    model: str
    threads: int
    bandwidth: MemoryBandwidth
    weights: WeightsPerToken
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
    native: NativeComparison | None
    native_missing: str  # why llama-bench was not measured; "" when it was

    @property
    def bound(self) -> GenerationBound:
        return GenerationBound(self.bandwidth.bound, self.weights.bytes_per_token)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "generation_bound_tps": self.bound.tokens_per_second}

    def _native_report(self) -> list[str]:
        native = self.native
        if native is None:
            return [self.native_missing]
        bound = self.bound
        return [
            f"Native llama.cpp, llama-bench on the same model ({self.threads} threads, batch {native.batch_size}, "
            f"micro-batch {native.ubatch_size}), median of {native.rounds} rounds alternating with ours:",
            f"  tg{NATIVE_GENERATION_TOKENS}, flash attention off: {native.native_generation_tps:.1f} tokens/s · "
            f"{bound.beside(native.native_generation_tps)}",
            f"  tg{NATIVE_GENERATION_TOKENS}, flash attention on:  {native.native_generation_fa_tps:.1f} tokens/s · "
            f"{bound.beside(native.native_generation_fa_tps)}",
            f"  ours, engine streaming path, {NATIVE_GENERATION_TOKENS} tokens: {native.ours_generation_tps:.1f} "
            f"tokens/s · {bound.beside(native.ours_generation_tps)}",
            f"  generation ours/native = {native.generation_ratio:.3f} (flash attention off), "
            f"{native.generation_ratio_fa:.3f} (on)",
            f"  pp{PROMPT_EVAL_TOKENS}, flash attention off: {native.native_prompt_tps:.1f} tokens/s; "
            f"on: {native.native_prompt_fa_tps:.1f} tokens/s; ours {native.ours_prompt_tps:.1f} tokens/s",
            f"  prompt evaluation ours/native = {native.prompt_ratio:.3f} (flash attention off), "
            f"{native.prompt_ratio_fa:.3f} (on)",
        ]

    def report(self) -> str:
        bound = self.bound
        return "\n".join(
            [
                f"Model: {self.model} ({self.threads} threads)",
                self.bandwidth.describe(),
                self.weights.describe(),
                f"Generation, engine streaming path: {self.engine_generation_tps:.1f} tokens/s (median) · "
                f"{bound.beside(self.engine_generation_tps)}",
                f"Generation, raw Llama.generate:    {self.raw_generation_tps:.1f} tokens/s (median) · "
                f"{bound.beside(self.raw_generation_tps)}",
                f"  engine / raw = {self.generation_ratio:.3f} (median of {REPEATS} back-to-back pairs)   "
                "(target >= 0.97)",
                f"Prompt evaluation: {self.prompt_eval_tps:.1f} tokens/s over {self.prompt_eval_tokens} tokens",
                f"Time to first token, turn 1:  {self.turn1_ttft_s * 1000:.0f} ms",
                f"Time to first token, turn 10: {self.turn10_ttft_s * 1000:.0f} ms "
                f"({self.turn10_history_tokens} tokens of history, {self.turn10_evaluated_tokens} evaluated)",
                f"  turn 10 / turn 1 = {self.ttft_ratio:.3f}   (target <= 1.5)",
                *self._native_report(),
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


def _prompt_eval_tps(engine: Engine, tokens: list[int]) -> float:
    llama = engine.llama
    llama.reset()
    started = time.perf_counter()
    llama.eval(tokens)
    return len(tokens) / (time.perf_counter() - started)


def _batch_sizes(engine: Engine) -> tuple[int, int]:
    """The logical and physical batch sizes llama.cpp was given, for llama-bench to use the same."""
    params = engine.llama.context_params
    return int(params.n_batch), int(params.n_ubatch)


class NativeBenchError(Exception):
    """llama-bench could not be run or read; the message says how, for the report's sentence."""


def _llama_bench(
    tool: Path, model: Path, threads: int, batch: int, ubatch: int
) -> dict[tuple[str, bool], float]:
    """One run of llama-bench (one repetition after its warm-up) of tg128 and pp512, flash attention off and on:
    tokens/s by (``"tg"`` or ``"pp"``, flash attention)."""
    command = [
        str(tool),
        *("-m", str(model), "-t", str(threads), "-b", str(batch), "-ub", str(ubatch)),
        *("-p", str(PROMPT_EVAL_TOKENS), "-n", str(NATIVE_GENERATION_TOKENS), "-fa", "off,on", "-r", "1"),
        *("-o", "json"),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=NATIVE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("llama-bench did not run: %s", error)
        raise NativeBenchError(str(error)) from error
    if done.returncode != 0:
        log.warning("llama-bench exited with %s:\n%s", done.returncode, done.stderr[-4000:])
        raise NativeBenchError(f"exit code {done.returncode}")
    try:
        entries: list[dict[str, Any]] = json.loads(done.stdout)
        figures = {
            ("pp" if entry["n_prompt"] else "tg", bool(entry["flash_attn"])): float(entry["avg_ts"])
            for entry in entries
        }
    except (ValueError, KeyError, TypeError) as error:
        log.warning("llama-bench printed what is not its JSON:\n%s", done.stdout[-4000:])
        raise NativeBenchError("its output could not be read") from error
    if len(figures) != 4:
        raise NativeBenchError(f"it reported {len(figures)} of the 4 tests")
    return figures


def _compare_with_native(
    engine: Engine, story: list[ChatMessage], prompt_tokens: list[int], say: Callable[[str], None]
) -> tuple[NativeComparison | None, str]:
    tool = native_tool_path("llama-bench")
    if not tool.is_file():
        return None, NATIVE_BENCH_MISSING.format(path=tool)
    info = engine.model
    assert info is not None
    batch, ubatch = _batch_sizes(engine)
    say(f"Comparing with llama.cpp's llama-bench ({NATIVE_ROUNDS} rounds, alternating)...")
    ours_generation: list[float] = []
    ours_prompt: list[float] = []
    native_runs: list[dict[tuple[str, bool], float]] = []

    def ours() -> None:
        ours_generation.append(_engine_generation_tps(engine, story, NATIVE_GENERATION_TOKENS))
        ours_prompt.append(_prompt_eval_tps(engine, prompt_tokens))

    def native() -> None:
        native_runs.append(_llama_bench(tool, info.path, info.threads, batch, ubatch))

    try:
        for index in range(NATIVE_ROUNDS):
            for measure in (ours, native)[:: -1 if index % 2 else 1]:
                measure()
    except NativeBenchError as error:
        return None, NATIVE_BENCH_FAILED.format(reason=error)

    def native_median(test: str, flash: bool) -> float:
        return statistics.median(run[(test, flash)] for run in native_runs)

    def ratio(mine: list[float], test: str, flash: bool) -> float:
        return statistics.median(
            ours_figure / run[(test, flash)] for ours_figure, run in zip(mine, native_runs, strict=True)
        )

    return (
        NativeComparison(
            tool=str(tool),
            rounds=NATIVE_ROUNDS,
            batch_size=batch,
            ubatch_size=ubatch,
            ours_generation_tps=statistics.median(ours_generation),
            ours_prompt_tps=statistics.median(ours_prompt),
            native_generation_tps=native_median("tg", False),
            native_generation_fa_tps=native_median("tg", True),
            native_prompt_tps=native_median("pp", False),
            native_prompt_fa_tps=native_median("pp", True),
            generation_ratio=ratio(ours_generation, "tg", False),
            generation_ratio_fa=ratio(ours_generation, "tg", True),
            prompt_ratio=ratio(ours_prompt, "pp", False),
            prompt_ratio_fa=ratio(ours_prompt, "pp", True),
        ),
        "",
    )


def run_benchmark(running: ChatEngine, progress: Callable[[str], None] | None = None) -> BenchResult:
    engine = local_engine(running)  # llama.cpp itself is measured: a server's engine answers with a sentence
    say = progress or (lambda _line: None)
    info = engine.model
    assert info is not None, "load a model before benchmarking"

    story: list[ChatMessage] = [
        {"role": "system", "content": "You are a storyteller."},
        {"role": "user", "content": _STORY},
    ]
    say(f"Measuring memory bandwidth (1 and {info.threads} threads)...")
    bandwidth = measure_bandwidth(info.threads)
    weights = weights_read_per_token(read_gguf(info.path))

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
    long_prompt: list[ChatMessage] = [{"role": "user", "content": _FILLER * 16 + "Summarize this."}]
    tokens, _ = engine.tokenize_messages(long_prompt)
    # As many tokens as llama-bench's pp512 evaluates, so the two figures compare (fewer in a smaller context).
    tokens = tokens[: min(PROMPT_EVAL_TOKENS, info.context_size - 1)]
    prompt_tps = max(_prompt_eval_tps(engine, tokens) for _ in range(REPEATS))

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

    native, native_missing = _compare_with_native(engine, story, tokens, say)

    return BenchResult(
        model=info.name,
        threads=info.threads,
        bandwidth=bandwidth,
        weights=weights,
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
        native=native,
        native_missing=native_missing,
    )
