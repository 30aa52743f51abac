"""The ``llamadesk`` parser and ``main`` (app/cli/__init__.py): what each kind of failure becomes."""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import pytest

import app.cli.history
from app import __version__
from app.cli import main
from app.core.paths import app_paths
from tests.helpers.cli import run


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_usage_error_exits_2() -> None:
    result = run("chat", "--mode", "poetry")
    assert result.returncode == 2


def test_help_lists_every_command_group() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    commands = re.findall(r"^    (\w+) ", result.stdout, re.MULTILINE)
    assert commands == ["chat", "bench", "history", "library", "models", "summarize", "serve"]
    assert "--self-test" in result.stdout and "--no-model" in result.stdout


def test_a_bug_is_a_sentence_on_screen_and_a_traceback_in_the_log(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], llamadesk_home: Path
) -> None:
    def broken_listing(_args: argparse.Namespace) -> int:  # stands in for a command with a bug
        raise KeyError("conversation_title")

    monkeypatch.setattr(app.cli.history, "run_list", broken_listing)
    assert main(["history", "list"]) == 1
    err = capsys.readouterr().err
    log_file = llamadesk_home / "logs" / "llamadesk.log"
    assert len(err.strip().splitlines()) == 1, err
    assert "KeyError: 'conversation_title'" in err and "This is a bug" in err and str(log_file) in err
    assert "Traceback" not in err
    logged = log_file.read_text(encoding="utf-8")
    assert "Traceback" in logged and "broken_listing" in logged


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--ctx", "10"], "context size must be 0 (the model's own) or between 256"),
        (["--ctx", "-5"], "context size must be 0 (the model's own) or between 256"),
        (["--ctx", "99999999999"], "context size must be 0"),
        (["--ctx", "4k"], "expected a whole number, not '4k'"),
        (["--threads", "100000"], "number of threads must be between 0"),
        (["--threads", "4096"], "number of threads must be between 0"),
        (["--threads", "-1"], "number of threads must be between 0"),
        (["--max-tokens", "-3"], "longest reply must be between 1 and 131,072"),
        (["--max-tokens", "0"], "longest reply must be between 1 and 131,072"),
        (["--temp", "nan"], "temperature must be a finite number"),
        (["--temp", "inf"], "temperature must be a finite number"),
        (["--temp", "-0.5"], "temperature must be between 0"),
        (["--temp", "9"], "temperature must be between 0"),
    ],
)
def test_an_out_of_range_option_is_a_usage_error_with_a_sentence(args: list[str], sentence: str) -> None:
    started = time.perf_counter()
    result = run("chat", "-p", "hi", "--no-save", *args)
    print(f"{' '.join(args)}: exit {result.returncode} in {time.perf_counter() - started:.2f} s")
    assert result.returncode == 2
    assert sentence in result.stderr
    assert "Traceback" not in result.stderr


def test_out_of_range_settings_fall_back_to_defaults_and_the_chat_still_answers(model_path: Path) -> None:
    path = app_paths().settings_file
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps({"context_size": -5, "threads": 100_000, "mode_overrides": {"chat": 5, "code": [1]}})
    )
    result = run("chat", "--model", str(model_path), "--no-save", "--max-tokens", "4", "-p", "Say hi.")
    print(result.stderr)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "context size must be 0" in result.stderr and "number of threads" in result.stderr
    assert "damaged" not in result.stderr and "Traceback" not in result.stderr


def test_the_smallest_context_loads_and_answers(model_path: Path) -> None:
    result = run(
        "chat", "--model", str(model_path), "--no-save", "--ctx", "256", "--max-tokens", "4", "-p", "Hi"
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["models", "recommend", "--ctx", "-5"], "context size must be 0"),
        (["models", "download", "some/repo", "--ctx", "10"], "context size must be 0"),
        (["models", "search", "llama", "--limit", "-3"], "number of results must be at least 1"),
        (["history", "list", "--limit", "-5"], "number of results must be at least 1"),
        (["history", "search", "x", "--limit", "0"], "number of results must be at least 1"),
    ],
)
def test_the_same_ranges_hold_in_the_other_commands(args: list[str], sentence: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert sentence in result.stderr and "Traceback" not in result.stderr
