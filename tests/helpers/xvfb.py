"""Running a script on a real X server (Xvfb, Qt's xcb platform), for screenshots of what a display shows."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_under_xvfb(arguments: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``python arguments...`` from the repository's root on a fresh Xvfb display; fails saying what to
    install when Xvfb is missing."""
    xvfb = shutil.which("Xvfb")
    assert xvfb, "Xvfb is missing: install the Debian package xvfb (`bash tests/system-packages.sh` does)"
    # -displayfd: Xvfb takes the first free display number itself and writes it to the pipe once it listens,
    # so tests running side by side (pytest -n) never pick the same one.
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-screen", "0", "1280x860x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(write_end,),
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as announced:
            ready, _, _ = select.select([announced], [], [], 10)
            display = announced.readline().strip() if ready else ""
        assert display.isdigit(), "Xvfb did not start within 10 s"
        env = {**os.environ, "DISPLAY": f":{display}", "QT_QPA_PLATFORM": "xcb"}
        return subprocess.run(
            [sys.executable, *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    finally:
        server.terminate()
        server.wait(10)
