"""The ``llamadesk`` parser and ``main`` (app/cli/__init__.py): what each kind of failure becomes."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

import app.cli.history
from app import __version__
from app.cli import main
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
    assert commands == ["chat", "bench", "history", "models", "summarize"]
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
