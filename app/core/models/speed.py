"""How fast a model will generate here, and the words for it ("fast", "usable", "slow").

Generating a token reads every weight once, so the time per token is the file's size over the memory bandwidth
(at the share of it llama.cpp reaches) plus a fixed cost per token (graph, sampling, the Python around it).
Measured speeds (``app.core.models.measured``) correct a prediction only where they can speak for it:

- the same file measured on a quiet machine is the answer;
- another file's measurement speaks only for models in the same regime: both bandwidth-bound (reading the
  weights is most of each token's time, so speed scales with 1 / size), or both dominated by the fixed cost.
  A 98 MB model's speed is mostly per-token overhead and says nothing about how a 5 GB model reads memory;
- a correction from another file never moves a prediction by more than ``MAX_CORRECTION`` either way, and a
  measurement taken while other processes held the CPU corrects nothing but its own file (within that bound).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from app.core.models.measured import SpeedRecord

# Generation reaches about this share of the bandwidth a plain array copy gets, plus a fixed cost per token
# (sampling, graph setup). On the 2-core machine this was fitted on, SmolLM2-135M Q4_1 (98 MB) at the copy's
# ~31 GB/s comes out at ~134 tokens/s, where llama-bench's tg128 measured ~130 and the engine 70-124.
GENERATION_EFFICIENCY = 0.6
PER_TOKEN_OVERHEAD_SECONDS = 0.002
# A discrete GPU's memory is several times faster than system RAM; used only when it cannot be read.
ASSUMED_GPU_BANDWIDTH = 300e9

# The speed words, in tokens per second on this machine: reading speed is ~5 tokens/s, so 15 keeps ahead of
# any reader, 3 is a reply one waits for, below that a reply of a paragraph takes minutes.
FAST_TOKENS_PER_SECOND = 15.0
USABLE_TOKENS_PER_SECOND = 3.0
SLOW_TOKENS_PER_SECOND = USABLE_TOKENS_PER_SECOND
# A model is bandwidth-bound when reading its weights takes at least this share of each token's time: then
# its speed follows 1 / size within 20%, and one such model's measured/predicted ratio carries to another.
BANDWIDTH_BOUND_SHARE = 0.8
# The most a measurement of one file may move the prediction for another, either way.
MAX_CORRECTION = 1.5


class SpeedLabel(str, Enum):
    FAST = "fast"
    USABLE = "usable"
    SLOW = "slow"
    UNKNOWN = "unknown"


def speed_label(tokens_per_second: float | None) -> SpeedLabel:
    if tokens_per_second is None:
        return SpeedLabel.UNKNOWN
    if tokens_per_second >= FAST_TOKENS_PER_SECOND:
        return SpeedLabel.FAST
    if tokens_per_second >= USABLE_TOKENS_PER_SECOND:
        return SpeedLabel.USABLE
    return SpeedLabel.SLOW


def _weights_seconds(bytes_per_token: int, bandwidth: float) -> float:
    return bytes_per_token / (bandwidth * GENERATION_EFFICIENCY)


def raw_tokens_per_second(bytes_per_token: int, bandwidth: float) -> float:
    """Generation speed bound by memory bandwidth: every weight is read once per token."""
    return 1.0 / (_weights_seconds(bytes_per_token, bandwidth) + PER_TOKEN_OVERHEAD_SECONDS)


def bandwidth_share(bytes_per_token: int, bandwidth: float) -> float:
    """The share of each token's predicted time spent reading the weights."""
    weights = _weights_seconds(bytes_per_token, bandwidth)
    return weights / (weights + PER_TOKEN_OVERHEAD_SECONDS)


def bandwidth_bound(bytes_per_token: int, bandwidth: float) -> bool:
    return bandwidth_share(bytes_per_token, bandwidth) >= BANDWIDTH_BOUND_SHARE


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


class SpeedBasis(str, Enum):
    MEASURED = "measured"  # this very file ran here on a quiet machine
    CALIBRATED = "calibrated"  # predicted, corrected (at most 1.5x) by runs that can speak for it
    ESTIMATED = "estimated"  # predicted from the measured memory bandwidth only
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SpeedPrediction:
    tokens_per_second: float | None
    basis: SpeedBasis

    @property
    def label(self) -> SpeedLabel:
        return speed_label(self.tokens_per_second)

    def describe(self) -> str:
        if self.tokens_per_second is None:
            return "speed unknown"
        prefix = "" if self.basis is SpeedBasis.MEASURED else "~"
        figure = (
            f"{self.tokens_per_second:.0f}"
            if self.tokens_per_second >= 10
            else f"{self.tokens_per_second:.1f}"
        )
        return f"{prefix}{figure} tokens/s"


def _bounded(factor: float) -> float:
    return min(MAX_CORRECTION, max(1.0 / MAX_CORRECTION, factor))


def speaks_for(record: SpeedRecord, file_size: int, bandwidth: float) -> bool:
    """Whether another file's measurement may correct the prediction for a file of this size."""
    if record.busy or record.file_size <= 0 or record.tokens_per_second <= 0:
        return False
    return bandwidth_bound(record.file_size, bandwidth) == bandwidth_bound(file_size, bandwidth)


def predict_speed(
    file_size: int,
    bandwidth: float | None,
    records: Sequence[SpeedRecord] = (),
    key: str | None = None,
) -> SpeedPrediction:
    """Tokens per second for a file of this size (``key``: its file name, to find its own measurement)."""
    own = next((r for r in records if key is not None and r.key == key), None)
    if own is not None and not own.busy:
        return SpeedPrediction(own.tokens_per_second, SpeedBasis.MEASURED)
    others = [r for r in records if r is not own]
    if not bandwidth or bandwidth <= 0:
        if own is not None:  # only busy samples, and nothing to weigh them against
            return SpeedPrediction(own.tokens_per_second, SpeedBasis.MEASURED)
        # Without a bandwidth figure the regime is unknown: only a quiet run of a file within 2x of this size
        # speaks for it, scaled by size (speed ~ 1 / bytes per token).
        near = [
            r
            for r in others
            if not r.busy
            and r.file_size > 0
            and abs(math.log(r.file_size / max(1, file_size))) <= math.log(2)
        ]
        if not near:
            return SpeedPrediction(None, SpeedBasis.UNKNOWN)
        nearest = min(near, key=lambda r: abs(math.log(r.file_size / max(1, file_size))))
        return SpeedPrediction(
            nearest.tokens_per_second * nearest.file_size / max(1, file_size), SpeedBasis.CALIBRATED
        )
    predicted = raw_tokens_per_second(file_size, bandwidth)
    if own is not None:
        # This file ran, but only while other processes held the CPU: it may pull the estimate, not replace it.
        ratio = own.tokens_per_second / predicted
        return SpeedPrediction(predicted * _bounded(ratio), SpeedBasis.CALIBRATED)
    speaking = [r for r in others if speaks_for(r, file_size, bandwidth)]
    if not speaking:
        return SpeedPrediction(predicted, SpeedBasis.ESTIMATED)
    ratios = [r.tokens_per_second / raw_tokens_per_second(r.file_size, bandwidth) for r in speaking]
    return SpeedPrediction(predicted * _bounded(statistics.median(ratios)), SpeedBasis.CALIBRATED)
