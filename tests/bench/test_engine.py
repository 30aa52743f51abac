"""``llamadesk bench`` on the real model, shortened: every figure is measured and the report states the targets."""

from __future__ import annotations

import pytest

from app.bench import engine as bench
from app.core.llm.engine import Engine


def test_benchmark_measures_every_figure(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "REPEATS", 3)
    monkeypatch.setattr(bench, "GENERATION_TOKENS", 24)
    monkeypatch.setattr(bench, "TTFT_ROUNDS", 1)
    monkeypatch.setattr(bench, "HISTORY_TARGET_TOKENS", 800)
    lines: list[str] = []
    result = bench.run_benchmark(engine, progress=lines.append)
    assert result.engine_generation_tps > 0 and result.raw_generation_tps > 0
    # Generous: the two paths run the same llama.cpp calls, so they cannot differ by a factor of two.
    assert 0.5 < result.generation_ratio < 2.0
    assert result.prompt_eval_tps > 0 and result.prompt_eval_tokens > 300
    assert 700 < result.turn10_history_tokens < 2048
    # The cache holds the history: turn 10 evaluates its own question, not the whole conversation.
    assert result.turn10_evaluated_tokens < result.turn10_history_tokens / 4
    report = result.report()
    assert "median of 3 back-to-back pairs" in report and "(target >= 0.97)" in report
    assert "(target <= 1.5)" in report and len(lines) == 3
