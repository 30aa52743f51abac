"""The bench's saved-state cases on the real test model, shortened: every figure is measured and the states
help."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.bench import reopen as bench
from app.core.llm.engine import Engine
from app.core.llm.load_options import LoadOptions
from app.core.modes import SamplingOptions


def test_reopen_and_switch_cases_measure_every_figure(
    model_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "REOPEN_TARGET_TOKENS", 400)
    monkeypatch.setattr(bench, "SWITCH_TARGET_TOKENS", 150)
    monkeypatch.setattr(bench, "GREEDY", SamplingOptions(temperature=0.0, max_tokens=2))
    monkeypatch.setattr(bench, "REOPEN_CONTEXT", 1024)
    engine = Engine()
    engine.load(model_path, LoadOptions(context_size=1024))
    try:
        lines: list[str] = []
        result = bench.run_reopen_benchmark(engine, lines.append)
        # Loaded back as it was, though the benchmark reloaded it (at its own context, as after a restart).
        assert engine.load_options == LoadOptions(context_size=1024)
    finally:
        engine.unload()
    with capsys.disabled():
        print("\n" + result.report())
    assert result.reopen_history_tokens >= 400
    # Restored, only the follow-up is evaluated; cold, everything.
    assert (
        result.reopen_evaluated_restored < 60 < result.reopen_history_tokens <= result.reopen_evaluated_cold
    )
    # A real state: the attention cache of every token (23 KB a token for SmolLM2, 18 KB for Gemma 3 270M).
    assert result.reopen_state_bytes > result.reopen_history_tokens * 10_000
    # The ratios are the benchmark's to print: on a busy machine one timing says nothing of the other.
    assert result.reopen_ratio > 0 and result.switch_ratio > 0
    assert "(target <= 0.15)" in result.report() and len(lines) == 2
