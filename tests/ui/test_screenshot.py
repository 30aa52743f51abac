"""A real window on a real X server (Xvfb, Qt's xcb platform), photographed mid-conversation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.xvfb import ROOT, run_under_xvfb

OUTPUT = ROOT / "test-output" / "main-window.png"


@pytest.mark.gui
def test_screenshot_of_the_main_window_mid_conversation(model_path: Path) -> None:
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.unlink(missing_ok=True)
    result = run_under_xvfb(["-m", "tests.ui.screenshot_main_window", str(OUTPUT), str(model_path)])
    assert result.returncode == 0, (
        "the window failed under Xvfb (if Qt could not load its xcb plugin,"
        " `bash tests/system-packages.sh` installs the X libraries it needs):\n" + result.stderr[-2000:]
    )

    from PySide6.QtGui import QImage

    image = QImage(str(OUTPUT))
    assert image.width() >= 1000 and image.height() >= 700
    # A real picture, not a blank screen: many distinct colours across the window.
    colours = {image.pixel(x, y) for x in range(0, image.width(), 16) for y in range(0, image.height(), 16)}
    assert len(colours) > 20
    print(f"screenshot: {OUTPUT}")
