"""``llamadesk bench --predict``: the menu's speed prediction for a file never run here, then the real runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.bench.gemma import GEMMA_FILE, assemble_gemma
from app.bench.predict import check_prediction
from app.core.models.hardware import probe_hardware

pytestmark = pytest.mark.slow


def test_the_gemma_file_is_joined_once_and_checked(gemma_path: Path, tmp_path: Path) -> None:
    assert gemma_path.name == GEMMA_FILE and gemma_path.stat().st_size == 253_113_024
    again = assemble_gemma(gemma_path.parent)  # already there and checked: not joined again
    assert again == gemma_path and not list(gemma_path.parent.glob("*.partial"))
    assert gemma_path.read_bytes()[:4] == b"GGUF"


def test_predicted_and_measured_speed_of_both_real_models(smollm2_path: Path, gemma_path: Path) -> None:
    """Both models by name, whichever one is the test model: ``bench --predict`` runs the two."""
    bandwidth = probe_hardware().memory_bandwidth
    assert bandwidth
    for path in (smollm2_path, gemma_path):
        check = check_prediction(path, bandwidth=bandwidth, repeats=3, tokens=32)
        print("\n" + check.report())
        # Never run here (each test has its own home): the prediction is the bandwidth estimate.
        assert check.predicted_basis == "estimated" and check.predicted_menu == check.predicted_estimated
        assert check.measured > 0 and len(check.runs) == 3
        if check.quiet_runs:  # on a busy machine the measurement says how busy it was, not how fast
            assert 1 / 3 <= check.ratio <= 3
