"""llama.cpp's own log lines go to our log, never to the person's terminal."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading

import pytest

from app.core.llm.engine import Engine
from app.core.modes import SamplingOptions

# A load of a file that is not there makes llama.cpp itself log three error lines, with no model needed.
_CHILD = textwrap.dedent(
    """
    import logging, sys
    import llama_cpp
    from app.core.llm import bindings
    if sys.argv[1] == "logged":
        logging.basicConfig(stream=sys.stdout, level=logging.DEBUG, format="LOG %(levelname)s %(message)s")
    bindings.import_backend()
    bindings.route_native_logs()  # a second call changes nothing
    model = llama_cpp.llama_model_load_from_file(b"/nonexistent/missing.gguf", llama_cpp.llama_model_default_params())
    print("loaded" if model else "not loaded")
    """
)


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, timeout=120, check=True
    )


def test_llama_cpp_lines_stay_out_of_the_terminal() -> None:
    result = _run("plain")  # as the CLI runs: no logging configured at all
    print(repr(result.stderr))
    assert result.stdout.strip() == "not loaded"
    assert result.stderr == ""


def test_llama_cpp_lines_reach_our_log_whole() -> None:
    result = _run("logged")
    print(result.stdout)
    assert result.stderr == ""
    lines = [line for line in result.stdout.splitlines() if line.startswith("LOG")]
    assert any("failed to open GGUF file '/nonexistent/missing.gguf'" in line for line in lines)
    assert all(line.startswith("LOG WARNING llama.cpp: ") for line in lines), lines
    assert len(lines) == 3  # one record per line: no empty records, no line split in two


def test_a_stop_mid_decode_is_not_logged_as_trouble(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Stopping a long prompt aborts llama.cpp mid-decode, which it reports as four warnings: expected after
    every Stop, so they go to the log as debug lines."""
    caplog.set_level(logging.DEBUG, logger="app.llama_cpp")
    engine.clear_cache()
    evaluating = threading.Event()
    reply = engine.chat(
        [{"role": "user", "content": "The lighthouse keeper wrote in his log every night. " * 200}],
        SamplingOptions(temperature=0.0, max_tokens=4),
        prompt_progress=lambda _done, _total: evaluating.set(),
    )
    stopper = threading.Thread(target=lambda: evaluating.wait(60) and engine.cancel())
    stopper.start()
    reply.collect()
    stopper.join(10)
    assert reply.stats.finish_reason == "cancelled"
    native = [r for r in caplog.records if r.name == "app.llama_cpp"]
    print("\n".join(f"{r.levelname} {r.getMessage()}" for r in native))
    assert any("ret = 2" in r.getMessage() and r.levelno == logging.DEBUG for r in native)
    assert [r.getMessage() for r in native if r.levelno >= logging.WARNING] == []
