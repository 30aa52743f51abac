"""llama.cpp's own log lines go to our log, never to the person's terminal."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
