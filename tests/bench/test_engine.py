"""``llamadesk bench`` on the real model, shortened: every figure is measured, the report states the targets, and
each generation figure stands beside the memory-bandwidth bound and, when it is built, llama.cpp's llama-bench."""

from __future__ import annotations

import pytest

from app.bench import engine as bench
from app.core.llm.engine import Engine


def test_benchmark_measures_every_figure(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "REPEATS", 3)
    monkeypatch.setattr(bench, "GENERATION_TOKENS", 24)
    monkeypatch.setattr(bench, "TTFT_ROUNDS", 1)
    monkeypatch.setattr(bench, "HISTORY_TARGET_TOKENS", 800)
    monkeypatch.setattr(bench, "NATIVE_ROUNDS", 1)
    lines: list[str] = []
    result = bench.run_benchmark(engine, progress=lines.append)
    assert result.engine_generation_tps > 0 and result.raw_generation_tps > 0
    # Generous: the two paths run the same llama.cpp calls, so they cannot differ by a factor of two.
    assert 0.5 < result.generation_ratio < 2.0
    assert result.prompt_eval_tps > 0 and result.prompt_eval_tokens == bench.PROMPT_EVAL_TOKENS
    assert result.bandwidth.bound > 0 and result.bound.tokens_per_second > 0
    assert 700 < result.turn10_history_tokens < 2048
    # The cache holds the history: turn 10 evaluates its own question, not the whole conversation.
    assert result.turn10_evaluated_tokens < result.turn10_history_tokens / 4
    report = result.report()
    assert "median of 3 back-to-back pairs" in report and "(target >= 0.97)" in report
    assert "(target <= 1.5)" in report
    generation_lines = [line for line in report.splitlines() if line.startswith("Generation")]
    assert len(generation_lines) == 2 and all(
        "· bound " in line and "% of it" in line for line in generation_lines
    )
    if result.native is None:
        # llama-bench is built by hand (installers/build_llama_server.py): without it the report says how to build it.
        assert "build_llama_server.py" in result.native_missing and result.native_missing in report
        assert len(lines) == 4
    else:
        native = result.native
        assert (
            min(native.native_generation_tps, native.native_generation_fa_tps, native.native_prompt_tps) > 0
        )
        # Positive only: one round on a shared 2-core machine, where another program's burst can slow either side
        # several-fold, says nothing about the ratio's size.
        assert min(native.generation_ratio, native.prompt_ratio, native.generation_ratio_fa) > 0
        assert "generation ours/native" in report and "prompt evaluation ours/native" in report
        assert len(lines) == 5
