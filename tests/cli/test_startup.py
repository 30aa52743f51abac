"""`llamadesk --version` and `--help` answer at once: building the parser loads none of the heavy libraries that
the commands themselves use (the engine, Qt, the Hub, the server, the document readers)."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.helpers.cli import llamadesk_command

# Each takes from tens of milliseconds (psutil, lxml) to a second (openai) to import.
HEAVY = (
    "llama_cpp",
    "PySide6",
    "shiboken6",
    "numpy",
    "huggingface_hub",
    "httpx2",
    "openai",
    "starlette",
    "uvicorn",
    "sse_starlette",
    "anyio",
    "pypdf",
    "docx",
    "lxml",
    "psutil",
    "filelock",
    "platformdirs",
    "pygments",
    "markdown_it",
)


def imported_modules(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``llamadesk ARGS...`` run with ``-X importtime``: its result, and the name of every module it imported."""
    command = llamadesk_command(*args)
    result = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]], capture_output=True, text=True, timeout=120
    )
    names = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", result.stderr, re.MULTILINE))
    return result, names


@pytest.mark.parametrize(
    "args", [["--version"], ["--help"], ["chat", "--help"], ["models", "list", "--help"]]
)
def test_the_parser_loads_no_heavy_library(args: list[str]) -> None:
    result, modules = imported_modules(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "app.cli" in modules  # the import log was read
    heavy = sorted(name for name in modules if name.split(".")[0] in HEAVY)
    assert not heavy, f"llamadesk {' '.join(args)} imported {heavy}"
