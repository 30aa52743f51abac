"""``llamadesk bench --draft``: prompt-lookup drafting against plain decoding, on the test model."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.bench.drafting import run_drafting_benchmark

pytestmark = pytest.mark.slow


def test_the_drafting_bench_runs_both_ways_and_prints_its_figures(model_path: Path) -> None:
    lines: list[str] = []
    result = run_drafting_benchmark(
        [model_path], tasks=("rewrite", "quote"), repeats=1, max_tokens=60, progress=lines.append
    )
    report = result.report()
    print("\n" + report)

    assert [task.task for task in result.tasks] == ["rewrite", "quote"]
    assert len(lines) == 2  # one progress line per task
    for task in result.tasks:
        assert task.model == model_path.stem
        assert task.plain > 0 and task.drafted > 0 and task.speedup > 0
        assert 0 < task.generated_tokens <= 60
        assert 0 <= task.accepted_tokens <= task.drafted_tokens
        assert (task.parted_at is None) == task.identical
        assert f"{task.speedup:.2f}x" in report
    rewrite = result.tasks[0]
    assert rewrite.drafted_tokens > 0, "the rewrite copies its prompt: drafts should have been made"
    assert "rewrite speedup" in report and "goal 1.5x" in report
    assert result.as_dict()["tasks"]
