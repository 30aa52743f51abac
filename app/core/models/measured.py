"""Generation speeds measured on this machine: several samples per model file, each with how busy the machine
was, kept in ``measured_speeds.json`` under the machine's fingerprint.

One reply on a busy machine says little (a 135M model measured 6.5 tokens/s while other programs held the CPU
runs at ~100 when they do not), so a file keeps its last ``MAX_SAMPLES`` samples and its figure is the median of
the best class of them: samples from a quiet machine, else samples whose conditions are unknown (files written
before samples were kept: each old entry reads as one such sample), else busy ones. ``CpuWindow`` measures how
much of the CPU other processes held while a reply ran: the machine's busy CPU time less this process's own,
over the wall time of every core.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import psutil

from app.core.files import read_json, write_json_atomic
from app.core.models.hardware import machine_fingerprint
from app.core.paths import app_paths

# Enough replies for a median to outvote a few busy moments; old samples age out as the machine changes.
MAX_SAMPLES = 9
# Other processes holding more than this share of the CPU while a reply ran make its sample a busy one: on
# 2 cores one other busy thread (50%) already slows llama.cpp's threads, which wait for each other per token.
BUSY_SHARE_LIMIT = 0.25


class SampleCondition(int, Enum):
    """How far a sample can be trusted, best first (the value orders them)."""

    QUIET = 0
    UNKNOWN = 1
    BUSY = 2


@dataclass(frozen=True)
class SpeedSample:
    tokens_per_second: float
    busy_share: float | None = None  # share of the CPU other processes held; None: not known
    at: float = 0.0

    @property
    def condition(self) -> SampleCondition:
        if self.busy_share is None:
            return SampleCondition.UNKNOWN
        return SampleCondition.BUSY if self.busy_share > BUSY_SHARE_LIMIT else SampleCondition.QUIET

    def as_dict(self) -> dict[str, Any]:
        return {"tokens_per_second": self.tokens_per_second, "busy_share": self.busy_share, "at": self.at}


@dataclass(frozen=True)
class SpeedRecord:
    """What one model file measured here: ``tokens_per_second`` is the median of its most trustworthy samples
    (see ``from_samples``), ``condition`` which class they were."""

    key: str
    parameters: int | None
    file_size: int
    tokens_per_second: float
    updated: float = 0.0
    samples: tuple[SpeedSample, ...] = field(default=(), compare=False)
    condition: SampleCondition = SampleCondition.UNKNOWN

    @classmethod
    def from_samples(
        cls, key: str, parameters: int | None, file_size: int, samples: Sequence[SpeedSample]
    ) -> SpeedRecord | None:
        usable = [s for s in samples if s.tokens_per_second > 0]
        if not usable or file_size <= 0:
            return None
        best = min(s.condition for s in usable)
        trusted = [s.tokens_per_second for s in usable if s.condition is best]
        return cls(
            key=key,
            parameters=parameters,
            file_size=file_size,
            tokens_per_second=statistics.median(trusted),
            updated=max(s.at for s in usable),
            samples=tuple(usable),
            condition=best,
        )

    @property
    def busy(self) -> bool:
        """Every sample was taken while other processes held the CPU: it says how slow a busy moment was."""
        return self.condition is SampleCondition.BUSY


# -- how busy the machine was --------------------------------------------------------------------------------


def _busy_cpu_seconds() -> float:
    times = psutil.cpu_times()
    # Steal is time a virtual machine's host gave to someone else: held by others, as far as we are concerned.
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


def _own_cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


@dataclass
class CpuWindow:
    """Start one when a reply starts; ``busy_share()`` when it ends tells what share of all cores other
    processes used meanwhile (0.0 quiet .. 1.0 every core busy with others), or None when it cannot be read."""

    wall: float
    machine_busy: float | None
    own: float | None
    cores: int

    @classmethod
    def start(cls) -> CpuWindow:
        machine: float | None
        own: float | None
        try:
            machine, own = _busy_cpu_seconds(), _own_cpu_seconds()
        except (OSError, psutil.Error, AttributeError):
            machine = own = None
        return cls(time.perf_counter(), machine, own, psutil.cpu_count(logical=True) or os.cpu_count() or 1)

    def busy_share(self) -> float | None:
        elapsed = time.perf_counter() - self.wall
        if self.machine_busy is None or self.own is None or elapsed < 0.05:
            return None
        try:
            machine = _busy_cpu_seconds() - self.machine_busy
            own = _own_cpu_seconds() - self.own
        except (OSError, psutil.Error, AttributeError):
            return None
        return min(1.0, max(0.0, (machine - own) / (elapsed * self.cores)))


# -- the file ------------------------------------------------------------------------------------------------


def speed_key(model_path_or_id: str | os.PathLike[str]) -> str:
    """Records are keyed by file name, so the same file measured anywhere on disk is one record."""
    text = os.fspath(model_path_or_id)
    return Path(text).name if text.lower().endswith(".gguf") else text


def speeds_file() -> Path:
    return app_paths().cache_dir / "measured_speeds.json"


def _samples_of(value: dict[str, Any]) -> list[SpeedSample]:
    raw = value.get("samples")
    if not isinstance(raw, list):
        # Written before samples were kept: its one (averaged) figure is one sample of unknown conditions.
        return [SpeedSample(float(value["tokens_per_second"]), None, float(value.get("updated", 0.0)))]
    samples = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        try:
            busy = item.get("busy_share")
            samples.append(
                SpeedSample(
                    float(item["tokens_per_second"]),
                    None if busy is None else float(busy),
                    float(item.get("at", 0.0)),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return samples


def _machine_entries() -> tuple[dict[str, Any], dict[str, Any]]:
    data = read_json(speeds_file())
    if not isinstance(data, dict):
        data = {}
    machine = data.get(machine_fingerprint())
    if not isinstance(machine, dict):
        machine = data[machine_fingerprint()] = {}
    return data, machine


def measured_speeds() -> list[SpeedRecord]:
    """The generation speeds measured on this machine (records from another machine are ignored)."""
    _data, machine = _machine_entries()
    found = []
    for key, value in machine.items():
        try:
            record = SpeedRecord.from_samples(
                str(key),
                int(value["parameters"]) if value.get("parameters") else None,
                int(value["file_size"]),
                _samples_of(value),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if record is not None:
            found.append(record)
    return found


def record_measured_speed(
    model_path_or_id: str | os.PathLike[str],
    params: int | None,
    file_size: int,
    tokens_per_second: float,
    *,
    busy_share: float | None = None,
) -> None:
    """Add one reply's generation speed to this file's samples (the caller skips replies too short to time).

    ``busy_share`` is what ``CpuWindow.busy_share()`` measured over the reply; without it the sample counts as
    one of unknown conditions. ``tokens_per_second`` stays in the entry (the record's figure) so a version that
    reads only that still finds it.
    """
    if tokens_per_second <= 0 or file_size <= 0:
        return
    data, machine = _machine_entries()
    key = speed_key(model_path_or_id)
    previous = machine.get(key)
    samples: list[SpeedSample] = []
    if isinstance(previous, dict) and _int_or_none(previous.get("file_size")) == file_size:
        try:
            samples = _samples_of(previous)
        except (KeyError, TypeError, ValueError):
            samples = []
    samples.append(SpeedSample(float(tokens_per_second), busy_share, time.time()))
    samples = samples[-MAX_SAMPLES:]
    record = SpeedRecord.from_samples(key, params, file_size, samples)
    assert record is not None  # one positive sample at least
    machine[key] = {
        "parameters": params,
        "file_size": file_size,
        "tokens_per_second": record.tokens_per_second,
        "updated": record.updated,
        "samples": [sample.as_dict() for sample in samples],
    }
    write_json_atomic(speeds_file(), data)


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None
