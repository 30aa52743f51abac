"""Running a script on a real X server (Xvfb, Qt's xcb platform), for screenshots of what a display shows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_display() -> int:
    for number in range(90, 140):
        if not Path(f"/tmp/.X{number}-lock").exists() and not Path(f"/tmp/.X11-unix/X{number}").exists():
            return number
    raise RuntimeError("no free X display number")


def run_under_xvfb(arguments: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``python arguments...`` from the repository's root on a fresh Xvfb display; fails saying what to
    install when Xvfb is missing."""
    xvfb = shutil.which("Xvfb")
    assert xvfb, "Xvfb is missing: install the Debian package xvfb (`bash tests/system-packages.sh` does)"
    display = _free_display()
    server = subprocess.Popen(
        [xvfb, f":{display}", "-screen", "0", "1280x860x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{display}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        env = {**os.environ, "DISPLAY": f":{display}", "QT_QPA_PLATFORM": "xcb"}
        return subprocess.run(
            [sys.executable, *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    finally:
        server.terminate()
        server.wait(10)
