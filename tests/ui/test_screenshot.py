"""A real window on a real X server (Xvfb, Qt's xcb platform), photographed mid-conversation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "main-window.png"


def _free_display() -> int:
    for number in range(90, 140):
        if not Path(f"/tmp/.X{number}-lock").exists() and not Path(f"/tmp/.X11-unix/X{number}").exists():
            return number
    raise RuntimeError("no free X display number")


@pytest.mark.gui
def test_screenshot_of_the_main_window_mid_conversation(model_path: Path) -> None:
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
        OUTPUT.parent.mkdir(exist_ok=True)
        OUTPUT.unlink(missing_ok=True)
        result = subprocess.run(
            [sys.executable, "-m", "tests.ui.screenshot_main_window", str(OUTPUT), str(model_path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, (
            "the window failed under Xvfb (if Qt could not load its xcb plugin,"
            " `bash tests/system-packages.sh` installs the X libraries it needs):\n" + result.stderr[-2000:]
        )
    finally:
        server.terminate()
        server.wait(10)

    from PySide6.QtGui import QImage

    image = QImage(str(OUTPUT))
    assert image.width() >= 1000 and image.height() >= 700
    # A real picture, not a blank screen: many distinct colours across the window.
    colours = {image.pixel(x, y) for x in range(0, image.width(), 16) for y in range(0, image.height(), 16)}
    assert len(colours) > 20
    print(f"screenshot: {OUTPUT}")
