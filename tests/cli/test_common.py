"""The pieces the model-using commands share: the one Ctrl+C handler, and finding the model to load."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from app.cli.common import resolve_model, stop_on_interrupt


def test_ctrl_c_inside_the_block_stops_the_work_and_the_handler_is_put_back() -> None:
    before = signal.getsignal(signal.SIGINT)
    stops: list[str] = []
    with stop_on_interrupt(lambda: stops.append("stop")):
        os.kill(os.getpid(), signal.SIGINT)
    assert stops == ["stop"]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_model_path_is_taken_as_given(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model.gguf"
    # A missing file is still the answer: loading it says what is wrong, in a sentence.
    assert resolve_model(argparse.Namespace(model=str(missing))) == missing
