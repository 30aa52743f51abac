"""A real window on a real X server, photographed as a newcomer first sees it: the welcome card on an empty chat."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers.xvfb import ROOT, run_under_xvfb

WINDOW = ROOT / "test-output" / "welcome-card-window.png"
CARD = ROOT / "test-output" / "welcome-card.png"


@pytest.mark.gui
def test_screenshot_of_the_welcome_card(smollm2_path: Path) -> None:
    """With SmolLM2 whichever test model is chosen: a newcomer's window has the starter loaded."""
    WINDOW.parent.mkdir(exist_ok=True)
    for picture in (WINDOW, CARD):
        picture.unlink(missing_ok=True)
    result = run_under_xvfb(
        ["-m", "tests.ui.screenshot_welcome", str(WINDOW), str(CARD), str(smollm2_path)], timeout=300
    )
    assert result.returncode == 0, "the window failed under Xvfb:\n" + result.stderr[-2000:]
    print(f"\n{result.stdout}screenshots: {WINDOW}, {CARD}")

    from PySide6.QtGui import QImage

    window, card = QImage(str(WINDOW)), QImage(str(CARD))
    assert window.width() >= 1000 and window.height() >= 600
    assert card.width() > 400 and card.height() > 100
    # A real picture, not a blank one: text and buttons give many distinct colours.
    colours = {card.pixel(x, y) for x in range(0, card.width(), 4) for y in range(0, card.height(), 4)}
    assert len(colours) > 10, sys.platform
