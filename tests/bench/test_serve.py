"""``llamadesk bench --serve`` on tiny settings: the engine directly, our streaming endpoint and llama-cpp-python's
own server each measured, side by side, in the report's shape (the figures are printed, not judged)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.bench import serve as serve_bench
from app.bench.serve import missing_llama_server_modules, run_serve_benchmark
from tests.helpers.models import ModelFacts


def test_the_three_ways_side_by_side(model_path: Path, model_facts: ModelFacts) -> None:
    """A file with no chat template of its own (Gemma 3 270M) is given to llama_cpp.server with the chat format
    of the built-in template LlamaDesk runs it with, so the three answer the same prompt."""
    assert not missing_llama_server_modules(), "install the test extra: pip install -e '.[test]'"
    result = run_serve_benchmark(model_path, threads=2, context_size=512, max_tokens=8, rounds=1)
    report = result.report()
    print(report)
    lines = report.splitlines()
    assert lines[0].startswith(f"Model: {model_path.name} (2 threads, context 512, batch 512)")
    if model_facts.architecture == "gemma3":
        assert (result.chat_template, result.chat_format) == ("gemma", "gemma")
        assert (
            lines[1]
            == "Chat template: built-in Gemma (the file has none; llama_cpp.server: --chat_format gemma)"
        )
    else:
        assert (result.chat_template, result.chat_format) == ("", "")
        assert not any(line.startswith("Chat template:") for line in lines)
    for name in ("engine directly (no HTTP)", "our streaming endpoint", "llama_cpp.server"):
        row = next(line for line in lines if line.startswith(name))
        tps, ms, _unit, tokens = row[len(name) :].split()
        assert float(tps) > 0 and float(ms) >= 0 and int(tokens) > 1
    assert any(line.strip().startswith("ours / engine = ") for line in lines)
    assert any(line.strip().startswith("added time to first token = ") for line in lines)
    assert any(line.strip().startswith("ours / llama_cpp.server = ") for line in lines)
    figures = json.loads(json.dumps(result.as_dict()))
    assert {"ours_vs_engine", "ours_vs_theirs", "added_ttft_ms"} <= set(figures)
    assert all(len(figures[way]["runs"]) == 1 for way in ("engine", "ours", "theirs"))


def measured_without_llama_cpp_server(
    model: str, why: str, chat_template: str = ""
) -> serve_bench.ServeBenchResult:
    """A result with our two ways measured (8 tokens, one round) and llama_cpp.server not, for ``why``."""
    return serve_bench.ServeBenchResult(
        model=model,
        threads=2,
        context_size=512,
        batch_size=512,
        max_tokens=8,
        rounds=1,
        engine=serve_bench.Way("engine directly (no HTTP)", [serve_bench.Run(0.1, 8, 50.0)]),
        ours=serve_bench.Way("our streaming endpoint", [serve_bench.Run(0.11, 8, 49.0)]),
        theirs=serve_bench.Way("llama_cpp.server"),
        theirs_missing=why,
        chat_template=chat_template,
    )


def test_without_llama_cpp_server_the_report_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_bench, "LLAMA_SERVER_MODULES", ("fastapi", "no_such_module_here"))
    missing = serve_bench.missing_llama_server_modules()
    assert missing == ["no_such_module_here"]
    result = measured_without_llama_cpp_server(
        "m.gguf", serve_bench.LLAMA_SERVER_INSTALL.format(missing=", ".join(missing))
    )
    report = result.report()
    print(report)
    assert "llama_cpp.server" in report and "not measured" in report
    assert "pip install 'llama-cpp-python[server]'" in report and "no_such_module_here" in report
    assert "ours / engine = 0.980" in report and "added time to first token = 10.0 ms" in report


def test_a_built_in_template_llama_cpp_server_has_no_format_for_is_named_and_not_measured() -> None:
    result = measured_without_llama_cpp_server(
        "phi.gguf", serve_bench.NO_CHAT_FORMAT.format(title="Phi-3", model="phi.gguf"), chat_template="phi3"
    )
    report = result.report()
    print(report)
    assert "Chat template: built-in Phi-3 (the file has none; llama_cpp.server: not measured)" in report
    assert "no chat format like LlamaDesk's built-in Phi-3 template" in report
    assert "phi3" not in serve_bench.LLAMA_CPP_CHAT_FORMATS
