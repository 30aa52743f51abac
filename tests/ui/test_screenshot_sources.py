"""A real window on a real X server, photographed with an answer about a PDF and its sources, one opened."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.documents import REPORT_PAGES, build_pdf
from tests.ui.test_screenshot import _free_display

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "answer-with-sources.png"


@pytest.mark.gui
def test_screenshot_of_an_answer_with_its_sources(model_path: Path, tmp_path: Path) -> None:
    xvfb = shutil.which("Xvfb")
    assert xvfb, "Xvfb is missing: install the Debian package xvfb (`bash tests/system-packages.sh` does)"
    pdf = build_pdf(tmp_path / "harbour-report.pdf", REPORT_PAGES)
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
            [sys.executable, "-m", "tests.ui.screenshot_sources", str(OUTPUT), str(model_path), str(pdf)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=360,
        )
        assert result.returncode == 0, (
            f"the window failed under Xvfb (exit {result.returncode}; 2: the answer had no sources):\n"
            + result.stderr[-2000:]
        )
    finally:
        server.terminate()
        server.wait(10)

    from PySide6.QtGui import QImage

    image = QImage(str(OUTPUT))
    assert image.width() >= 1000 and image.height() >= 700
    colours = {image.pixel(x, y) for x in range(0, image.width(), 16) for y in range(0, image.height(), 16)}
    assert len(colours) > 20
    print(f"screenshot: {OUTPUT}")
