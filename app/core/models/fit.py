"""Will a model load here, and which quantization to get: pure arithmetic on sizes and shapes, so it can be
checked by hand.

Memory needed = weights + KV cache at the chosen context + compute buffers + a fixed overhead, compared with
the memory that is *available* (not the total: other programs are running), and with free GPU memory when
this llama.cpp build can offload (partial offload being the middle case). The fit words ("runs well",
"tight", "too large") speak of memory only; speed has its own words (``app.core.models.speed``), and a
quantization is recommended only when it runs well *and* is at least usable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from app.core.llm.memory import (
    OVERHEAD_BYTES,
    MemoryEstimate,
    ModelShape,
    compute_buffer_bytes,
    estimate_memory,
    kv_cache_bytes,
)
from app.core.models.measured import SpeedRecord, measured_speeds, record_measured_speed, speed_key
from app.core.models.speed import (
    ASSUMED_GPU_BANDWIDTH,
    GENERATION_EFFICIENCY,
    PER_TOKEN_OVERHEAD_SECONDS,
    SLOW_TOKENS_PER_SECOND,
    SpeedBasis,
    SpeedLabel,
    SpeedPrediction,
    offloaded_tokens_per_second,
    predict_speed,
    raw_tokens_per_second,
)
from app.core.units import human_bytes

# The speed names lived here before app.core.models.speed and .measured, the memory ones before
# app.core.llm.memory: callers may still import them here.
__all__ = [
    "ASSUMED_GPU_BANDWIDTH",
    "GENERATION_EFFICIENCY",
    "OVERHEAD_BYTES",
    "PER_TOKEN_OVERHEAD_SECONDS",
    "SLOW_TOKENS_PER_SECOND",
    "MemoryEstimate",
    "ModelShape",
    "SpeedBasis",
    "SpeedLabel",
    "SpeedPrediction",
    "SpeedRecord",
    "compute_buffer_bytes",
    "estimate_memory",
    "kv_cache_bytes",
    "measured_speeds",
    "offloaded_tokens_per_second",
    "predict_speed",
    "raw_tokens_per_second",
    "record_measured_speed",
    "speed_key",
]

# Effective bits per weight of whole GGUF files (embeddings and output layers included), from the sizes of
# Llama-3.1-8B-Instruct quantizations (8.03 B parameters): Q4_K_M is 4.92 GB, so 4.92e9 * 8 / 8.03e9 = 4.9.
QUANT_BITS_PER_WEIGHT: dict[str, float] = {
    "Q2_K": 3.2,
    "Q3_K_S": 3.65,
    "Q3_K_M": 4.0,
    "Q3_K_L": 4.3,
    "IQ4_XS": 4.45,
    "Q4_0": 4.65,
    "Q4_K_S": 4.7,
    "Q4_K_M": 4.9,
    "Q5_K_S": 5.6,
    "Q5_K_M": 5.7,
    "Q6_K": 6.6,
    "Q8_0": 8.5,
    "F16": 16.0,
    "BF16": 16.0,
}
# The quantizations offered when the Hub cannot be asked which files a repository really has.
ESTIMATED_QUANTS = ("Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16")
# Below this, answers get noticeably worse: a smaller model at Q4_K_M is usually the better choice.
QUALITY_FLOOR = "Q4_K_M"
# Above this nothing measurable is gained, while every token costs proportionally more time.
QUALITY_CEILING = "Q8_0"

# Keep this share of the available memory free: the system, the window and the OS file cache need it.
RUNS_WELL_SHARE = 0.85
# Share of free GPU memory that can hold layers; drivers and the display keep the rest.
VRAM_USABLE_SHARE = 0.9


# -- sizes of quantizations ----------------------------------------------------------------------------------


def quant_rank(quant: str) -> float:
    """Orders quantizations by bits per weight; unknown names sort by the digit after the Q."""
    known = QUANT_BITS_PER_WEIGHT.get(quant.upper())
    if known is not None:
        return known
    digits = [int(ch) for ch in quant if ch.isdigit()]
    return float(digits[0]) if digits else 0.0


def estimated_file_size(parameters: int, quant: str) -> int:
    """A GGUF file's size from its parameter count and quantization, for when the Hub cannot be asked."""
    bits = QUANT_BITS_PER_WEIGHT.get(quant.upper())
    if bits is None:
        raise ValueError(f"No size estimate for quantization {quant!r}")
    return int(parameters * bits / 8)


# -- will it fit ---------------------------------------------------------------------------------------------


class FitLabel(str, Enum):
    RUNS_WELL = "runs well"
    TIGHT = "tight"
    TOO_LARGE = "too large"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class MemoryBudget:
    """What a model may use, in bytes. ``reclaimable`` is what unloading the current model would free, so a
    loaded model is not counted against the one being considered."""

    available_ram: int | None
    total_ram: int | None
    vram_free: int | None = None
    gpu_offload: bool = False
    unified_memory: bool = False
    reclaimable: int = 0

    @property
    def ram(self) -> int | None:
        return None if self.available_ram is None else self.available_ram + self.reclaimable


@dataclass(frozen=True)
class FitAssessment:
    label: FitLabel
    needed: int  # bytes in system RAM
    gpu_layers: int  # 0: CPU only, -1: all layers on the GPU, n: partial offload
    reason: str


def assess_fit(estimate: MemoryEstimate, n_layers: int, budget: MemoryBudget) -> FitAssessment:
    """Sort a model into runs well / tight / too large for this memory budget.

    Runs well: it fits in 85% of the available memory (or entirely in GPU memory). Tight: it fits only in
    what is available, or needs some layers on the CPU (partial offload), or would fit once other programs
    are closed. Too large: not even the total memory would hold it.
    """
    total = estimate.total
    ram = budget.ram
    vram = budget.vram_free if budget.gpu_offload and not budget.unified_memory else None
    if vram is not None and vram > 0:
        usable_vram = vram * VRAM_USABLE_SHARE
        on_gpu_fixed = estimate.kv_cache + estimate.compute
        if total - estimate.overhead <= usable_vram:
            needed = estimate.overhead
            return FitAssessment(FitLabel.RUNS_WELL, needed, -1, "all layers fit in GPU memory")
        per_layer = estimate.weights / max(1, n_layers)
        layers_on_gpu = max(0, min(n_layers - 1, int((usable_vram - on_gpu_fixed) // max(1.0, per_layer))))
        if layers_on_gpu > 0:
            needed = total - on_gpu_fixed - int(layers_on_gpu * per_layer)
            if ram is not None and needed <= ram:
                return FitAssessment(
                    FitLabel.TIGHT,
                    needed,
                    layers_on_gpu,
                    f"{layers_on_gpu} of {n_layers} layers fit in GPU memory, the rest runs on the CPU (slower)",
                )
    if ram is None:
        return FitAssessment(FitLabel.UNKNOWN, total, 0, "the free memory could not be read")
    if total <= ram * RUNS_WELL_SHARE:
        return FitAssessment(
            FitLabel.RUNS_WELL, total, 0, f"needs {human_bytes(total)} of {human_bytes(ram)} available"
        )
    if total <= ram:
        return FitAssessment(
            FitLabel.TIGHT,
            total,
            0,
            f"needs {human_bytes(total)}, nearly all of the {human_bytes(ram)} available",
        )
    if budget.total_ram is not None and total <= budget.total_ram * RUNS_WELL_SHARE:
        return FitAssessment(
            FitLabel.TIGHT,
            total,
            0,
            f"needs {human_bytes(total)} but only {human_bytes(ram)} is free now; close other programs first",
        )
    limit = budget.total_ram if budget.total_ram is not None else ram
    return FitAssessment(
        FitLabel.TOO_LARGE,
        total,
        0,
        f"needs {human_bytes(total)}, more than this computer's {human_bytes(limit)}",
    )


# -- which quantization --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantChoice:
    quant: str
    fit: FitAssessment
    speed: SpeedPrediction


@dataclass(frozen=True)
class Recommendation:
    quant: str | None
    below_quality_floor: bool
    advice: str


def recommend_quant(choices: Sequence[QuantChoice]) -> Recommendation:
    """The quantization to get: it must run well (memory) and be at least usable (speed), not above Q8_0.

    Among those, the largest that is fast here, since a few bits per weight more are worth less than
    replies that keep ahead of reading; else the largest usable one; below Q4_K_M only with a warning. An
    unknown speed (no bandwidth figure) does not hold a model back.
    """
    ceiling = quant_rank(QUALITY_CEILING)
    floor = quant_rank(QUALITY_FLOOR)
    fitting = [c for c in choices if c.fit.label is FitLabel.RUNS_WELL and quant_rank(c.quant) <= ceiling]
    good = [c for c in fitting if c.speed.label is not SpeedLabel.SLOW]
    if not good:
        if fitting:
            return Recommendation(
                None, False, "This model fits in memory but would be slow here; choose a smaller model."
            )
        return Recommendation(
            None, False, "No quantization of this model runs well here; choose a smaller model."
        )
    above_floor = [c for c in good if quant_rank(c.quant) >= floor]
    fast = [c for c in above_floor if c.speed.label is SpeedLabel.FAST]
    if fast:
        best = max(fast, key=lambda c: quant_rank(c.quant))
        return Recommendation(
            best.quant, False, f"{best.quant} is the largest quantization that is fast here."
        )
    if above_floor:
        best = max(above_floor, key=lambda c: quant_rank(c.quant))
        return Recommendation(
            best.quant, False, f"{best.quant} is the largest quantization that runs well and is usable here."
        )
    best = max(good, key=lambda c: quant_rank(c.quant))
    return Recommendation(
        best.quant,
        True,
        f"Only {best.quant} runs well here, and below {QUALITY_FLOOR} answers get noticeably worse; "
        "a smaller model at Q4_K_M is usually better.",
    )
