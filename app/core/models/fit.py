"""Will a model run here, and how fast: pure arithmetic on sizes and shapes, so it can be checked by hand.

Memory needed = weights + KV cache at the chosen context + compute buffers + a fixed overhead, compared with
the memory that is *available* (not the total: other programs are running), and with free GPU memory when
this llama.cpp build can offload (partial offload being the middle case). Generation speed is bounded by
memory bandwidth, since every weight is read once per token; the prediction is corrected by the speeds
actually measured on this machine once a model has run (``record_measured_speed``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from app.core.files import read_json, write_json_atomic
from app.core.llm.gguf_check import GGUFInfo
from app.core.models.hardware import machine_fingerprint
from app.core.paths import app_paths
from app.core.units import human_bytes

# A fixed allowance for llama.cpp's own buffers, graph and the Python process around it.
OVERHEAD_BYTES = 150 * 1024 * 1024

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
# Generation reaches about this share of the bandwidth a plain array copy gets, plus a fixed cost per token
# (sampling, graph setup). Fitted on SmolLM2-135M Q4_1 on a 2-core machine: 98 MB, 20 GB/s -> ~100 tokens/s.
GENERATION_EFFICIENCY = 0.6
PER_TOKEN_OVERHEAD_SECONDS = 0.002
# Below this a model is usable only with patience; "runs well" would be a lie.
SLOW_TOKENS_PER_SECOND = 3.0
# A discrete GPU's memory is several times faster than system RAM; used only when it cannot be read.
ASSUMED_GPU_BANDWIDTH = 300e9


@dataclass(frozen=True)
class ModelShape:
    """The dimensions that decide memory beyond the weights."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    n_vocab: int

    @classmethod
    def from_gguf(cls, info: GGUFInfo) -> ModelShape:
        def arch_int(key: str, default: int) -> int:
            value = info.arch_value(key)
            if isinstance(value, list) and value:  # per-layer values (some hybrids): take the largest
                value = max(int(v) for v in value)
            return int(value) if isinstance(value, (int, float)) and value > 0 else default

        n_layers = arch_int("block_count", 32)
        n_heads = arch_int("attention.head_count", 32)
        n_kv_heads = arch_int("attention.head_count_kv", n_heads)
        embedding = arch_int("embedding_length", 4096)
        head_dim = arch_int("attention.key_length", max(1, embedding // max(1, n_heads)))
        tokens = info.metadata.get("tokenizer.ggml.tokens")
        n_vocab = len(tokens) if isinstance(tokens, list) and len(tokens) else 32_000
        return cls(n_layers, n_heads, n_kv_heads, head_dim, n_vocab)


def kv_cache_bytes(shape: ModelShape, context_size: int, bytes_per_value: float = 2.0) -> int:
    """Keys and values (hence 2) for every layer and position, f16 by default."""
    return int(2 * shape.n_layers * context_size * shape.n_kv_heads * shape.head_dim * bytes_per_value)


def compute_buffer_bytes(shape: ModelShape, context_size: int, batch_size: int = 512) -> int:
    """llama.cpp's scratch memory: the logits of one batch plus the attention scores (f32) of one layer."""
    logits = batch_size * shape.n_vocab * 4
    attention_scores = shape.n_heads * context_size * batch_size * 4
    return logits + attention_scores


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    compute: int
    overhead: int = OVERHEAD_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead


def estimate_memory(
    weights_bytes: int, shape: ModelShape, context_size: int, batch_size: int = 512
) -> MemoryEstimate:
    return MemoryEstimate(
        weights=weights_bytes,
        kv_cache=kv_cache_bytes(shape, context_size),
        compute=compute_buffer_bytes(shape, context_size, batch_size),
    )


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


# -- how fast ------------------------------------------------------------------------------------------------


def raw_tokens_per_second(bytes_per_token: int, bandwidth: float) -> float:
    """Generation speed bound by memory bandwidth: every weight is read once per token."""
    seconds = bytes_per_token / (bandwidth * GENERATION_EFFICIENCY) + PER_TOKEN_OVERHEAD_SECONDS
    return 1.0 / seconds


def offloaded_tokens_per_second(
    weights: int,
    n_layers: int,
    gpu_layers: int,
    cpu_bandwidth: float,
    gpu_bandwidth: float = ASSUMED_GPU_BANDWIDTH,
) -> float:
    """With some layers on a GPU, each token reads the GPU's share there and the rest from system RAM."""
    gpu_share = 1.0 if gpu_layers < 0 or gpu_layers >= n_layers else gpu_layers / max(1, n_layers)
    seconds = (
        weights * (1 - gpu_share) / (cpu_bandwidth * GENERATION_EFFICIENCY)
        + weights * gpu_share / (gpu_bandwidth * GENERATION_EFFICIENCY)
        + PER_TOKEN_OVERHEAD_SECONDS
    )
    return 1.0 / seconds


@dataclass(frozen=True)
class SpeedRecord:
    """A generation speed measured on this machine after a model actually ran."""

    key: str
    parameters: int | None
    file_size: int
    tokens_per_second: float
    updated: float = 0.0


class SpeedBasis(str, Enum):
    MEASURED = "measured"  # this very file ran here
    CALIBRATED = "calibrated"  # predicted, scaled by a similar model that ran here
    ESTIMATED = "estimated"  # predicted from the measured memory bandwidth only
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SpeedPrediction:
    tokens_per_second: float | None
    basis: SpeedBasis

    def describe(self) -> str:
        if self.tokens_per_second is None:
            return "speed unknown"
        prefix = "" if self.basis is SpeedBasis.MEASURED else "~"
        return (
            f"{prefix}{self.tokens_per_second:.0f} tokens/s"
            if self.tokens_per_second >= 10
            else (f"{prefix}{self.tokens_per_second:.1f} tokens/s")
        )


def speed_key(model_path_or_id: str | os.PathLike[str]) -> str:
    """Records are keyed by file name, so the same file measured anywhere on disk is one record."""
    text = os.fspath(model_path_or_id)
    return Path(text).name if text.lower().endswith(".gguf") else text


def predict_speed(
    file_size: int,
    bandwidth: float | None,
    records: Sequence[SpeedRecord] = (),
    key: str | None = None,
) -> SpeedPrediction:
    """Tokens per second for a file of this size: measured if this file ran here, else the bandwidth
    estimate scaled by the measured/predicted ratio of the run whose size is nearest (small models are
    dominated by fixed costs, large ones by bandwidth, so the nearest size is the fairest comparison)."""
    if key is not None:
        for record in records:
            if record.key == key:
                return SpeedPrediction(record.tokens_per_second, SpeedBasis.MEASURED)
    if not bandwidth or bandwidth <= 0:
        usable = [r for r in records if r.file_size > 0 and r.tokens_per_second > 0]
        if not usable:
            return SpeedPrediction(None, SpeedBasis.UNKNOWN)
        # Without a bandwidth figure, scale the nearest measured run by size (speed ~ 1 / bytes per token).
        nearest = min(usable, key=lambda r: abs(math.log(r.file_size / max(1, file_size))))
        return SpeedPrediction(
            nearest.tokens_per_second * nearest.file_size / max(1, file_size), SpeedBasis.CALIBRATED
        )
    predicted = raw_tokens_per_second(file_size, bandwidth)
    usable = [r for r in records if r.file_size > 0 and r.tokens_per_second > 0]
    if not usable:
        return SpeedPrediction(predicted, SpeedBasis.ESTIMATED)
    nearest = min(usable, key=lambda r: abs(math.log(r.file_size / max(1, file_size))))
    factor = nearest.tokens_per_second / raw_tokens_per_second(nearest.file_size, bandwidth)
    factor = min(3.0, max(0.1, factor))  # one odd run (a busy machine) must not swing every prediction wildly
    return SpeedPrediction(predicted * factor, SpeedBasis.CALIBRATED)


def _speeds_file() -> Path:
    return app_paths().cache_dir / "measured_speeds.json"


def measured_speeds() -> list[SpeedRecord]:
    """The generation speeds measured on this machine (records from another machine are ignored)."""
    data = read_json(_speeds_file())
    if not isinstance(data, dict):
        return []
    records = data.get(machine_fingerprint())
    if not isinstance(records, dict):
        return []
    found = []
    for key, value in records.items():
        try:
            found.append(
                SpeedRecord(
                    key=str(key),
                    parameters=int(value["parameters"]) if value.get("parameters") else None,
                    file_size=int(value["file_size"]),
                    tokens_per_second=float(value["tokens_per_second"]),
                    updated=float(value.get("updated", 0.0)),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return found


def record_measured_speed(
    model_path_or_id: str | os.PathLike[str], params: int | None, file_size: int, tokens_per_second: float
) -> None:
    """Remember how fast a model generated here (call after each reply; short replies are ignored by the
    caller's judgement). Successive measurements are averaged so one busy moment does not stick."""
    if tokens_per_second <= 0 or file_size <= 0:
        return
    path = _speeds_file()
    data = read_json(path)
    if not isinstance(data, dict):
        data = {}
    machine = data.setdefault(machine_fingerprint(), {})
    if not isinstance(machine, dict):
        machine = data[machine_fingerprint()] = {}
    key = speed_key(model_path_or_id)
    previous = machine.get(key)
    speed = float(tokens_per_second)
    if (
        isinstance(previous, dict)
        and isinstance(previous.get("tokens_per_second"), (int, float))
        and int(previous.get("file_size", 0)) == file_size
    ):
        speed = 0.5 * float(previous["tokens_per_second"]) + 0.5 * speed
    machine[key] = {
        "parameters": params,
        "file_size": file_size,
        "tokens_per_second": speed,
        "updated": time.time(),
    }
    write_json_atomic(path, data)


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


def effective_label(fit: FitAssessment, speed: SpeedPrediction) -> FitLabel:
    """A model that fits but would crawl is not one that runs well."""
    slow = speed.tokens_per_second is not None and speed.tokens_per_second < SLOW_TOKENS_PER_SECOND
    if fit.label is FitLabel.RUNS_WELL and slow:
        return FitLabel.TIGHT
    return fit.label


def recommend_quant(choices: Sequence[QuantChoice]) -> Recommendation:
    """The largest quantization that runs well, not above Q8_0; below Q4_K_M only with a warning."""
    ceiling = quant_rank(QUALITY_CEILING)
    floor = quant_rank(QUALITY_FLOOR)
    good = [
        c
        for c in choices
        if effective_label(c.fit, c.speed) is FitLabel.RUNS_WELL and quant_rank(c.quant) <= ceiling
    ]
    if not good:
        return Recommendation(
            None, False, "No quantization of this model runs well here; choose a smaller model."
        )
    best = max(good, key=lambda c: quant_rank(c.quant))
    if quant_rank(best.quant) < floor:
        return Recommendation(
            best.quant,
            True,
            f"Only {best.quant} runs well here, and below {QUALITY_FLOOR} answers get noticeably worse; "
            "a smaller model at Q4_K_M is usually better.",
        )
    return Recommendation(best.quant, False, f"{best.quant} is the largest quantization that runs well here.")
