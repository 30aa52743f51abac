"""``llamadesk bench``'s wiring: which benchmark runs, on which model, and how its figures are printed.

The benchmarks themselves are tested beside their code (tests/bench/); here they are shortened or stood in for.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import app.bench.engine
import app.bench.gui
import app.bench.reopen
from app.bench.gui import GuiBenchResult
from app.cli import main


def test_json_runs_the_engine_benchmark_on_the_given_model(
    model_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(app.bench.engine, "REPEATS", 1)
    monkeypatch.setattr(app.bench.engine, "GENERATION_TOKENS", 8)
    monkeypatch.setattr(app.bench.engine, "TTFT_ROUNDS", 1)
    monkeypatch.setattr(app.bench.engine, "TURNS", 2)
    monkeypatch.setattr(app.bench.engine, "HISTORY_TARGET_TOKENS", 200)
    monkeypatch.setattr(app.bench.reopen, "REOPEN_TARGET_TOKENS", 300)
    monkeypatch.setattr(app.bench.reopen, "SWITCH_TARGET_TOKENS", 150)
    monkeypatch.setattr(app.bench.reopen, "REOPEN_CONTEXT", 2048)
    assert main(["bench", "--model", str(model_path), "--ctx", "2048", "--json"]) == 0
    captured = capsys.readouterr()
    figures = json.loads(captured.out)
    assert figures["engine_generation_tps"] > 0 and figures["prompt_eval_tokens"] > 0
    assert figures["reopen_restored_ttft_s"] > 0 and figures["reopen_state_bytes"] > 0
    assert figures["model"] and figures["threads"] > 0
    assert captured.err == ""  # --json is for scripts: no load line, no progress


def test_gui_runs_the_window_benchmark_with_the_model_and_context(
    model_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[Path, int]] = []

    def fake_window_benchmark(
        model: Path, context_size: int = 2048, *, embedding_model: Path | None = None, probe: bool = False
    ) -> GuiBenchResult:
        """Stands in for the real one (tests/bench runs it): a window, a model load and a reply take a minute."""
        calls.append((model, context_size))
        assert embedding_model is None and not probe
        return GuiBenchResult(
            window_shown_ms=120.0,
            ticks=400,
            worst_gap_ms=31.5,
            p99_gap_ms=14.0,
            median_gap_ms=10.1,
            load_seconds=0.8,
            reply_tokens=300,
            reply_tokens_per_second=42.0,
            document_pages=300,
            document_seconds=2.5,
            document_worst_gap_ms=28.0,
            worst_gap_phase="reply streamed",
        )

    monkeypatch.setattr(app.bench.gui, "run_gui_benchmark", fake_window_benchmark)
    assert main(["bench", "--gui", "--model", str(model_path), "--ctx", "1024"]) == 0
    assert "worst gap 31.5 ms during reply streamed   (target < 50 ms)" in capsys.readouterr().out
    assert main(["bench", "--gui", "--model", str(model_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["worst_gap_ms"] == 31.5
    assert calls == [(model_path, 1024), (model_path, 2048)]
