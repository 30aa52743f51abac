"""``llamadesk bench --serve`` on tiny settings: the engine directly, our streaming endpoint, llama-cpp-python's
own server and llama.cpp's native llama-server each measured, side by side, in the report's shape (the figures are
printed, not judged). llama-server is built by installers/build_llama_server.py, which CI does not run (it takes
several minutes): without it, its test is skipped with the reason, and the report's sentence is checked instead."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from app.bench import serve as serve_bench
from app.bench.serve import find_native_server, missing_llama_server_modules, run_serve_benchmark
from tests.helpers.models import ModelFacts

PYTHON_WAYS = ("engine directly (no HTTP)", "our streaming endpoint", "llama_cpp.server")


def test_the_three_python_ways_side_by_side_and_a_sentence_for_the_missing_llama_server(
    model_path: Path, model_facts: ModelFacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file with no chat template of its own (Gemma 3 270M) is given to llama_cpp.server with the chat format
    of the built-in template LlamaDesk runs it with, so the three answer the same prompt. With no llama-server
    anywhere the lookup searches (PATH, the build script's folder in the user's cache), the report says so in one
    sentence, how to build it, and prints the rest."""
    assert not missing_llama_server_modules(), "install the test extra: pip install -e '.[test]'"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert find_native_server() == (None, serve_bench.NATIVE_SERVER_MISSING)
    result = run_serve_benchmark(model_path, threads=2, context_size=512, max_tokens=8, rounds=1)
    report = result.report()
    print(report)
    lines = report.splitlines()
    assert lines[0].startswith(f"Model: {model_path.name} (2 threads, context 512, batch 512)")
    if model_facts.architecture == "gemma3":
        assert (result.chat_template, result.chat_format) == ("gemma", "gemma")
        assert lines[1] == (
            "Chat template: built-in Gemma (the file has none; llama_cpp.server: --chat_format gemma; "
            "llama-server: the same Jinja source)"
        )
    else:
        assert (result.chat_template, result.chat_format) == ("", "")
        assert not any(line.startswith("Chat template:") for line in lines)
    for name in PYTHON_WAYS:
        row = next(line for line in lines if line.startswith(name))
        tps, ms, _unit, tokens = row[len(name) :].split()
        assert float(tps) > 0 and float(ms) >= 0 and int(tokens) > 1
    native_row = next(line for line in lines if line.startswith(serve_bench.NATIVE_NAME))
    assert native_row.split()[-2:] == ["not", "measured"]
    assert any(line.strip().startswith("ours / engine = ") for line in lines)
    assert any(line.strip().startswith("added time to first token = ") for line in lines)
    assert any(line.strip().startswith("ours / llama_cpp.server = ") for line in lines)
    assert [line.strip() for line in lines].count(serve_bench.NATIVE_SERVER_MISSING) == 1
    assert "python installers/build_llama_server.py" in serve_bench.NATIVE_SERVER_MISSING
    assert not any("ours - llama-server" in line for line in lines)
    figures = json.loads(json.dumps(result.as_dict()))
    assert {"ours_vs_engine", "ours_vs_theirs", "added_ttft_ms", "ttft_behind_native_ms"} <= set(figures)
    assert figures["ttft_behind_native_ms"] is None and figures["native_missing"]
    assert all(len(figures[way]["runs"]) == 1 for way in ("engine", "ours", "theirs"))
    assert figures["native"]["runs"] == []


def test_llama_server_is_found_where_given_on_path_or_where_the_build_script_puts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    not_there = tmp_path / "nowhere" / "llama-server"
    binary, why = find_native_server(not_there)
    assert binary is None and str(not_there) in why and "build_llama_server.py" in why
    built = serve_bench.native_tool_path("llama-server")
    assert built.is_relative_to(tmp_path / "cache")
    assert find_native_server() == (None, serve_bench.NATIVE_SERVER_MISSING)
    built.parent.mkdir(parents=True)
    built.write_text("")
    built.chmod(0o755)
    assert find_native_server() == (built, "")
    on_path = tmp_path / "bin" / "llama-server"
    on_path.parent.mkdir()
    on_path.write_text("")
    on_path.chmod(0o755)
    assert find_native_server() == (on_path, "")
    assert find_native_server(built) == (built, "")


def test_the_native_llama_server_side_by_side_with_ours(model_path: Path) -> None:
    """The four ways on the test model, llama-server started and read like the others: every figure is there and
    positive (tiny settings on a shared machine: the speeds themselves are not judged)."""
    binary, why = find_native_server()
    if binary is None:
        pytest.skip(f"llama.cpp's llama-server is not built here, so the four-way run was not tested: {why}")
    result = run_serve_benchmark(model_path, threads=2, context_size=512, max_tokens=8, rounds=1)
    report = result.report()
    print(report)
    lines = report.splitlines()
    assert f"llama-server: {binary}" in lines
    for name in (*PYTHON_WAYS, serve_bench.NATIVE_NAME):
        row = next(line for line in lines if line.startswith(name))
        tps, ms, _unit, tokens = row[len(name) :].split()
        assert float(tps) > 0 and float(ms) > 0 and int(tokens) > 1
    behind = next(line.strip() for line in lines if "ours - llama-server time to first token" in line)
    assert behind.endswith("(goal <= 10 ms)")
    assert any(line.strip().startswith("ours / llama-server = ") for line in lines)
    assert serve_bench.NATIVE_SERVER_MISSING not in report
    figures = json.loads(json.dumps(result.as_dict()))
    assert figures["native_server"] == str(binary) and figures["native_missing"] == ""
    assert isinstance(figures["ttft_behind_native_ms"], float)
    assert figures["ours_vs_native"] > 0 and figures["ours_vs_engine"] > 0
    for way in ("engine", "ours", "theirs", "native"):
        assert len(figures[way]["runs"]) == 1
        assert figures[way]["median_tps"] > 0 and figures[way]["median_ttft_s"] > 0


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
        native_missing=serve_bench.NATIVE_SERVER_MISSING,
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
    assert serve_bench.NATIVE_SERVER_MISSING in report


def test_a_built_in_template_llama_cpp_server_has_no_format_for_is_named_and_not_measured() -> None:
    result = measured_without_llama_cpp_server(
        "phi.gguf", serve_bench.NO_CHAT_FORMAT.format(title="Phi-3", model="phi.gguf"), chat_template="phi3"
    )
    report = result.report()
    print(report)
    assert (
        "Chat template: built-in Phi-3 (the file has none; llama_cpp.server: not measured; "
        "llama-server: the same Jinja source)"
    ) in report
    assert "no chat format like LlamaDesk's built-in Phi-3 template" in report
    assert "phi3" not in serve_bench.LLAMA_CPP_CHAT_FORMATS
