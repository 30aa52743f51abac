"""``llamadesk --self-test`` from the source tree (tests/installers runs it from the built bundle)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.cli import run


def test_self_test_loads_generates_and_opens_the_window(model_path: Path, llamadesk_home: Path) -> None:
    result = run("--self-test", "--model", str(model_path), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert re.search(r"^\[ok\] load: ", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^\[ok\] generate: [1-9]\d* tokens", result.stdout, re.MULTILINE), result.stdout
    assert "[ok] window: opened and closed on the 'offscreen' platform" in result.stdout
    assert result.stdout.rstrip().endswith("Self-test passed.")
    # The window step runs in a scratch home: the person's own history and settings stay untouched.
    written = {path.name for path in llamadesk_home.rglob("*")}
    assert "history.sqlite3" not in written and "settings.json" not in written, written


def test_self_test_without_a_model_says_so_and_fails(tmp_path: Path) -> None:
    result = run("--self-test", "--model", str(tmp_path / "missing.gguf"), timeout=300)
    assert result.returncode == 1
    assert "[FAILED] load: " in result.stdout
    assert "Self-test failed: 1 step(s)." in result.stdout
    assert "Traceback" not in result.stderr
