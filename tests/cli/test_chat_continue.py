"""``llamadesk chat --continue ID``: a saved conversation goes on, its history restored from its saved state."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from app.core.llm.saved_state_store import SUFFIX
from app.core.paths import app_paths
from tests.helpers.cli import run

FILLER = (
    "My garden has sandy soil that dries quickly in summer; the north corner stays shaded until noon, "
    "the tomatoes there grew slowly last year while the beans did well. "
)


def evaluated(stderr: str) -> tuple[int, int]:
    found = re.search(r"(\d+)/(\d+) prompt tokens evaluated", stderr)
    assert found, stderr
    return int(found.group(1)), int(found.group(2))


def test_continue_restores_the_conversations_state(model_path: Path) -> None:
    common = ("--model", str(model_path), "--temp", "0", "--max-tokens", "6", "--stats")
    first = run("chat", *common, "-p", FILLER * 4 + "What grows well in sandy soil?")
    assert first.returncode == 0, first.stderr
    listed = run("history", "list")
    found = re.search(r"^\s*(\d+)\s+\d{4}-\d\d-\d\d", listed.stdout, re.MULTILINE)
    assert found, listed.stdout
    conversation_id = found.group(1)
    states = [p for p in app_paths().saved_states_dir.iterdir() if p.name.endswith(SUFFIX)]
    assert len(states) == 1 and stat.S_IMODE(states[0].stat().st_mode) == 0o600

    follow_up = run("chat", *common, "--continue", conversation_id, "-p", "And in the shade?")
    assert follow_up.returncode == 0, follow_up.stderr
    done, prompt = evaluated(follow_up.stderr)
    assert prompt > 150 and done < prompt / 3  # the history came from the saved state
    shown = run("history", "show", conversation_id)
    assert "And in the shade?" in shown.stdout and "sandy soil" in shown.stdout


def test_continue_names_a_missing_conversation(model_path: Path) -> None:
    result = run("chat", "--model", str(model_path), "--continue", "99", "-p", "Hello")
    assert result.returncode == 1
    assert "There is no conversation 99" in result.stderr and "Traceback" not in result.stderr
    result = run("chat", "--model", str(model_path), "--continue", "0", "-p", "Hello")
    assert result.returncode == 2
