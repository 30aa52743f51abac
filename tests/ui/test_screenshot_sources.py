"""A real window on a real X server, photographed with an answer about a PDF and its sources, one opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.documents import REPORT_PAGES, build_pdf
from tests.helpers.xvfb import ROOT, run_under_xvfb

OUTPUT = ROOT / "test-output" / "answer-with-sources.png"


@pytest.mark.gui
def test_screenshot_of_an_answer_with_its_sources(model_path: Path, tmp_path: Path) -> None:
    pdf = build_pdf(tmp_path / "harbour-report.pdf", REPORT_PAGES)
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.unlink(missing_ok=True)
    result = run_under_xvfb(
        ["-m", "tests.ui.screenshot_sources", str(OUTPUT), str(model_path), str(pdf)], timeout=360
    )
    assert result.returncode == 0, (
        f"the window failed under Xvfb (exit {result.returncode}; 2: the answer had no sources):\n"
        + result.stderr[-2000:]
    )

    from PySide6.QtGui import QImage

    image = QImage(str(OUTPUT))
    assert image.width() >= 1000 and image.height() >= 700
    colours = {image.pixel(x, y) for x in range(0, image.width(), 16) for y in range(0, image.height(), 16)}
    assert len(colours) > 20
    print(f"screenshot: {OUTPUT}")
