"""``llamadesk bench --gui``: the window benchmark itself, with real Qt widgets (offscreen) and the real model."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.bench.gui import run_gui_benchmark
from app.bench.gui_transcript import run_transcript_benchmark

pytestmark = pytest.mark.gui


def test_gui_thread_never_waits_while_loading_and_generating(model_path: Path, llamadesk_home: Path) -> None:
    """The window benchmark itself: a 10 ms timer on the GUI thread, the real model loading and answering."""
    result = run_gui_benchmark(model_path)
    print(result.report())
    assert result.ticks > 10 and result.reply_tokens > 0
    assert result.worst_gap_ms < 1000, f"the GUI thread was blocked for {result.worst_gap_ms:.0f} ms"
    assert not llamadesk_home.exists(), "the benchmark must run in a throwaway home"
    assert result.transcript is not None and result.transcript.reply_chars == 50_000


@pytest.mark.slow
def test_a_long_reply_costs_per_frame_what_a_short_one_does(llamadesk_home: Path) -> None:
    """The transcript's cases alone (no model needed), on a shorter reply: the cost of a repaint near its end is
    that near its start (the goal of 1.5 is the full benchmark's; the slack here is for a busy machine)."""
    result = run_transcript_benchmark(chars=20_000, open_messages=60)
    print(result.report())
    assert result.reply_chars == 20_000 and result.frames_measured > 20
    assert result.frame_ratio < 2.5, (
        f"a repaint near the end costs {result.frame_ratio:.1f}x one near the start"
    )
    assert result.open_first_paint_ms > 0 and result.theme_change_ms > 0
    assert not llamadesk_home.exists()
