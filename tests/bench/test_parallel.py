"""``llamadesk bench --serve --parallel N`` on tiny settings: our server with --parallel N, llama.cpp's native
llama-server with -np N and our one stream alone, side by side in the report's shape (the figures are printed, not
judged). Without a built llama-server its row is "not measured" and the report says how to build it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from app.bench import serve as serve_bench
from app.bench.parallel import GOAL_OURS_VS_NATIVE, run_parallel_benchmark
from app.bench.serve import find_native_server
from app.cli.bench import register


def test_our_parallel_server_beside_our_single_stream_and_a_sentence_without_llama_server(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    result = run_parallel_benchmark(
        model_path, parallel=2, threads=2, context_size=512, max_tokens=8, rounds=1
    )
    report = result.report()
    print(report)
    lines = report.splitlines()
    assert lines[0].startswith(
        f"Model: {model_path.name} (2 threads, context 512, batch 512); 2 concurrent streams"
    )
    for name in ("ours, --parallel 2", "ours, one stream"):
        row = next(line for line in lines if line.startswith(name))
        tps, tokens = row[len(name) :].split()
        assert float(tps) > 0 and int(tokens) > 0
    native_row = next(line for line in lines if line.startswith(serve_bench.NATIVE_NAME))
    assert native_row.split()[-2:] == ["not", "measured"]
    assert [line.strip() for line in lines].count(serve_bench.NATIVE_SERVER_MISSING) == 1
    assert any(line.strip().startswith("ours 2 streams / ours one stream = ") for line in lines)
    figures = json.loads(json.dumps(result.as_dict()))
    assert figures["ours"]["median_tps"] > 0 and figures["single"]["median_tps"] > 0
    assert figures["ours"]["bursts"][0]["tokens"] <= 2 * 8 and figures["native"]["bursts"] == []
    window = next(line for line in lines if line.startswith("The window's time to first token: "))
    assert "beside 2 API streams" in window and window.endswith("goal <= 1.2)")
    assert figures["window"]["ratio"] > 0 and len(figures["window"]["beside_streams"]) == 1


def test_beside_the_native_llama_server_with_as_many_slots(model_path: Path) -> None:
    binary, why = find_native_server()
    if binary is None:
        pytest.skip(f"llama.cpp's llama-server is not built here, so the parallel run was not tested: {why}")
    result = run_parallel_benchmark(
        model_path, parallel=2, threads=2, context_size=512, max_tokens=8, rounds=1
    )
    report = result.report()
    print(report)
    lines = report.splitlines()
    assert f"llama-server: {binary}" in lines
    row = next(line for line in lines if line.startswith(f"{serve_bench.NATIVE_NAME} -np 2"))
    assert float(row.split()[-2]) > 0
    ratio = next(line.strip() for line in lines if line.strip().startswith("ours / llama-server = "))
    assert ratio.endswith(f"(goal >= {GOAL_OURS_VS_NATIVE}; 2 streams each)")
    assert result.ours_vs_native > 0 and result.native_vs_single > 0


def test_the_command_line_takes_parallel_with_serve() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["bench", "--serve", "--parallel", "4"])
    assert args.serve and args.parallel == 4
