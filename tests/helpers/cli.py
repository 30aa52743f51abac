"""Running ``llamadesk`` as a person does: a real process, with the test's environment (its own home)."""

from __future__ import annotations

import os
import subprocess
import sys


def llamadesk_command(*args: str) -> list[str]:
    """The command line of ``llamadesk ARGS...`` run from this checkout with the test's Python."""
    return [sys.executable, "-m", "app", *args]


def run(*args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``llamadesk ARGS...`` run to its end, stdout and stderr captured as text."""
    return subprocess.run(
        llamadesk_command(*args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )
