"""``llamadesk bench --gui``: the window benchmark itself, with real Qt widgets (offscreen) and the real model."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.bench.gui import run_gui_benchmark

pytestmark = pytest.mark.gui


def test_gui_thread_never_waits_while_loading_and_generating(model_path: Path, llamadesk_home: Path) -> None:
    """The window benchmark itself: a 10 ms timer on the GUI thread, the real model loading and answering."""
    result = run_gui_benchmark(model_path)
    print(result.report())
    assert result.ticks > 10 and result.reply_tokens > 0
    assert result.worst_gap_ms < 250, f"the GUI thread was blocked for {result.worst_gap_ms:.0f} ms"
    assert not llamadesk_home.exists(), "the benchmark must run in a throwaway home"
