"""The fit and speed arithmetic, checked against numbers worked out by hand in the comments."""

from __future__ import annotations

import pytest

from app.core.models.fit import (
    OVERHEAD_BYTES,
    FitLabel,
    MemoryBudget,
    ModelShape,
    QuantChoice,
    SpeedBasis,
    SpeedPrediction,
    SpeedRecord,
    assess_fit,
    compute_buffer_bytes,
    estimate_memory,
    estimated_file_size,
    kv_cache_bytes,
    measured_speeds,
    offloaded_tokens_per_second,
    predict_speed,
    raw_tokens_per_second,
    recommend_quant,
    record_measured_speed,
)

GB = 1000**3
GIB = 1024**3
# Llama 3.1 8B: 32 layers, 32 heads, 8 KV heads of 128, vocabulary 128256.
LLAMA_8B = ModelShape(n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128, n_vocab=128_256)
# Llama 3.3 70B: 80 layers, 64 heads, 8 KV heads of 128.
LLAMA_70B = ModelShape(n_layers=80, n_heads=64, n_kv_heads=8, head_dim=128, n_vocab=128_256)
Q4_K_M_8B = 4_920_000_000  # bartowski's Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf, 4.92 GB
Q4_K_M_70B = 42_520_000_000  # Llama-3.3-70B-Instruct-Q4_K_M.gguf, 42.5 GB
SIXTEEN_GB = MemoryBudget(available_ram=12 * GB, total_ram=16 * GB)


def test_kv_cache_of_an_8b_model_at_8k_is_one_gib() -> None:
    # 2 (K and V) x 32 layers x 8192 positions x 8 heads x 128 x 2 bytes = 1,073,741,824.
    assert kv_cache_bytes(LLAMA_8B, 8192) == 1_073_741_824 == GIB


def test_compute_buffers_by_hand() -> None:
    # logits 512 x 128256 x 4 = 262,668,288; attention 32 x 8192 x 512 x 4 = 536,870,912.
    assert compute_buffer_bytes(LLAMA_8B, 8192) == 262_668_288 + 536_870_912


def test_8b_q4_k_m_at_8k_fits_on_16_gb() -> None:
    memory = estimate_memory(Q4_K_M_8B, LLAMA_8B, 8192)
    # 4,920,000,000 + 1,073,741,824 + 799,539,200 + 157,286,400 = 6,950,567,424 bytes.
    assert memory.total == 6_950_567_424
    assert memory.overhead == OVERHEAD_BYTES == 157_286_400
    fit = assess_fit(memory, LLAMA_8B.n_layers, SIXTEEN_GB)
    assert fit.label is FitLabel.RUNS_WELL  # 6.95 GB <= 85% of 12 GB = 10.2 GB
    assert fit.gpu_layers == 0 and fit.needed == 6_950_567_424


def test_70b_does_not_fit_on_16_gb() -> None:
    memory = estimate_memory(Q4_K_M_70B, LLAMA_70B, 8192)
    # KV: 2 x 80 x 8192 x 8 x 128 x 2 = 2.68 GB; with the weights well over 16 GB.
    assert memory.kv_cache == 2_684_354_560
    fit = assess_fit(memory, LLAMA_70B.n_layers, SIXTEEN_GB)
    assert fit.label is FitLabel.TOO_LARGE
    assert "more than this computer's 16.0 GB" in fit.reason


def test_tight_when_it_fits_only_in_what_is_left() -> None:
    memory = estimate_memory(Q4_K_M_8B, LLAMA_8B, 8192)  # 6.95 GB
    # 7.5 GB available: 6.95 <= 7.5 but > 85% of it (6.375).
    fit = assess_fit(memory, 32, MemoryBudget(available_ram=7_500_000_000, total_ram=8 * GB))
    assert fit.label is FitLabel.TIGHT and "nearly all" in fit.reason
    # 4 GB available of 16: would fit after closing other programs (6.95 <= 85% of 16 = 13.6).
    fit = assess_fit(memory, 32, MemoryBudget(available_ram=4 * GB, total_ram=16 * GB))
    assert fit.label is FitLabel.TIGHT and "close other programs" in fit.reason
    # A loaded model that would be unloaded first gives its memory back.
    fit = assess_fit(memory, 32, MemoryBudget(available_ram=4 * GB, total_ram=16 * GB, reclaimable=5 * GB))
    assert fit.label is FitLabel.RUNS_WELL  # 6.95 <= 85% of 9 GB = 7.65


def test_partial_gpu_offload_is_the_middle_case() -> None:
    memory = estimate_memory(Q4_K_M_8B, LLAMA_8B, 8192)
    budget = MemoryBudget(available_ram=12 * GB, total_ram=16 * GB, vram_free=4 * GB, gpu_offload=True)
    fit = assess_fit(memory, 32, budget)
    # Usable VRAM 3.6e9; KV + compute stay on the GPU (1,873,281,024); a layer is 4.92e9 / 32 = 153,750,000:
    # (3,600,000,000 - 1,873,281,024) // 153,750,000 = 11 layers on the GPU.
    assert fit.label is FitLabel.TIGHT and fit.gpu_layers == 11
    # RAM keeps the rest: 6,950,567,424 - 1,873,281,024 - 11 x 153,750,000 = 3,386,036,400.
    assert fit.needed == 3_386_036_400
    whole = assess_fit(memory, 32, MemoryBudget(12 * GB, 16 * GB, vram_free=24 * GB, gpu_offload=True))
    assert whole.label is FitLabel.RUNS_WELL and whole.gpu_layers == -1
    # A build that cannot offload ignores the GPU.
    cpu = assess_fit(memory, 32, MemoryBudget(12 * GB, 16 * GB, vram_free=24 * GB, gpu_offload=False))
    assert cpu.gpu_layers == 0


def test_unknown_memory_says_unknown() -> None:
    fit = assess_fit(estimate_memory(Q4_K_M_8B, LLAMA_8B, 4096), 32, MemoryBudget(None, None))
    assert fit.label is FitLabel.UNKNOWN


def test_sizes_estimated_from_bits_per_weight() -> None:
    # 8,030,261,248 parameters x 4.9 bits / 8 = 4,918,535,014 bytes (the real file: 4.92 GB).
    assert estimated_file_size(8_030_261_248, "Q4_K_M") == 4_918_535_014
    assert estimated_file_size(1_000_000_000, "Q8_0") == 1_062_500_000
    with pytest.raises(ValueError):
        estimated_file_size(1, "Q9_Z")


def test_speed_is_bandwidth_over_bytes_per_token() -> None:
    # 98,362,432 bytes at 20 GB/s x 0.6: 8.197 ms, plus 2 ms per token -> 98.1 tokens/s.
    assert raw_tokens_per_second(98_362_432, 20e9) == pytest.approx(98.07, abs=0.01)
    # 1 GB at 20 GB/s: 1/(1e9/12e9 + 0.002) = 11.72 tokens/s.
    assert predict_speed(GB, 20e9) == SpeedPrediction(pytest.approx(11.72, abs=0.01), SpeedBasis.ESTIMATED)
    assert predict_speed(GB, None).basis is SpeedBasis.UNKNOWN


def test_measured_speeds_correct_the_prediction() -> None:
    records = [SpeedRecord("small.gguf", None, GB, 5.0)]
    # This very file ran here: its speed is the answer.
    assert predict_speed(GB, 20e9, records, key="small.gguf") == SpeedPrediction(5.0, SpeedBasis.MEASURED)
    # Another file: predicted 5.929 tokens/s for 2 GB, scaled by 5.0 / 11.72 (the measured/predicted ratio).
    # Another file: predicted 5.929 tokens/s for 2 GB; the measured/predicted ratio (5.0 / 11.72 = 0.43) is more
    # than one file may say about another, so the correction stops at 1 / 1.5.
    calibrated = predict_speed(2 * GB, 20e9, records, key="other.gguf")
    assert calibrated.basis is SpeedBasis.CALIBRATED
    assert calibrated.tokens_per_second == pytest.approx(5.929 / 1.5, abs=0.01)
    # Without a bandwidth figure the nearest run is scaled by size.
    assert predict_speed(2 * GB, None, records).tokens_per_second == pytest.approx(2.5)


def test_offloaded_layers_read_from_the_faster_memory() -> None:
    cpu_only = offloaded_tokens_per_second(4 * GB, 32, 0, 20e9)
    half = offloaded_tokens_per_second(4 * GB, 32, 16, 20e9, gpu_bandwidth=200e9)
    # Half the weights at 12 GB/s effective, half at 120 GB/s: 1/(2e9/12e9 + 2e9/120e9 + 0.002) = 5.393.
    assert half == pytest.approx(5.393, abs=0.01)
    assert cpu_only < half < offloaded_tokens_per_second(4 * GB, 32, -1, 20e9, gpu_bandwidth=200e9)


def test_record_measured_speed_is_kept_and_averaged() -> None:
    record_measured_speed("/models/x/Llama-Q4_K_M.gguf", 8_000_000_000, 4_920_000_000, 10.0)
    record_measured_speed("/elsewhere/Llama-Q4_K_M.gguf", 8_000_000_000, 4_920_000_000, 6.0)
    (record,) = measured_speeds()
    assert record.key == "Llama-Q4_K_M.gguf"
    assert record.tokens_per_second == pytest.approx(8.0)
    record_measured_speed("bartowski/Other:Q4_K_M", None, 1000, 50.0)
    assert {r.key for r in measured_speeds()} == {"Llama-Q4_K_M.gguf", "bartowski/Other:Q4_K_M"}


def choice(quant: str, label: FitLabel, speed: float | None = 20.0) -> QuantChoice:
    from app.core.models.fit import FitAssessment

    return QuantChoice(quant, FitAssessment(label, 0, 0, ""), SpeedPrediction(speed, SpeedBasis.ESTIMATED))


def test_recommended_quant_is_the_largest_that_runs_well() -> None:
    choices = [
        choice("Q4_K_M", FitLabel.RUNS_WELL),
        choice("Q5_K_M", FitLabel.RUNS_WELL),
        choice("Q6_K", FitLabel.TIGHT),
        choice("Q8_0", FitLabel.TOO_LARGE),
    ]
    assert recommend_quant(choices).quant == "Q5_K_M"
    # Above Q8_0 nothing is gained: F16 is not recommended even when it fits.
    assert (
        recommend_quant([choice("Q8_0", FitLabel.RUNS_WELL), choice("F16", FitLabel.RUNS_WELL)]).quant
        == "Q8_0"
    )


def test_below_q4_k_m_comes_with_a_warning_and_nothing_fitting_says_so() -> None:
    low = recommend_quant([choice("Q3_K_M", FitLabel.RUNS_WELL), choice("Q4_K_M", FitLabel.TIGHT)])
    assert low.quant == "Q3_K_M" and low.below_quality_floor and "smaller model" in low.advice
    none = recommend_quant([choice("Q4_K_M", FitLabel.TOO_LARGE)])
    assert none.quant is None


def test_a_model_that_fits_but_would_crawl_is_not_recommended() -> None:
    slow = recommend_quant([choice("Q4_K_M", FitLabel.RUNS_WELL, speed=1.0)])
    assert slow.quant is None and "would be slow" in slow.advice
    # The largest that is at least usable (3 tokens/s): Q5_K_M, not the slow Q8_0.
    usable = [
        choice("Q4_K_M", FitLabel.RUNS_WELL, speed=5.0),
        choice("Q5_K_M", FitLabel.RUNS_WELL, speed=3.0),
        choice("Q8_0", FitLabel.RUNS_WELL, speed=2.9),
    ]
    assert recommend_quant(usable).quant == "Q5_K_M"
    # But when one is fast (15 tokens/s), the largest fast one beats a larger one that is only usable.
    fast = [
        choice("Q4_K_M", FitLabel.RUNS_WELL, speed=20.0),
        choice("Q6_K", FitLabel.RUNS_WELL, speed=15.0),
        choice("Q8_0", FitLabel.RUNS_WELL, speed=12.0),
    ]
    assert recommend_quant(fast).quant == "Q6_K"
    # No bandwidth figure, no speed: memory alone decides.
    assert recommend_quant([choice("Q4_K_M", FitLabel.RUNS_WELL, speed=None)]).quant == "Q4_K_M"
