"""What this machine can run: memory, cores, CPU features, GPUs, free disk and memory bandwidth.

Every probe is wrapped so that a failure reads as "unknown" (``None``), never as a crash: a fit label that
says "unknown" is honest, a window that does not open is not. The memory-bandwidth figure decides the
predicted generation speed (token generation reads every weight once per token), so it is measured once
per machine and cached under a fingerprint of the machine in ``app_paths().hardware_cache_file``.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil

from app.core.files import read_json, write_json_atomic
from app.core.llm.bindings import gpu_offload_supported, system_info
from app.core.paths import app_paths
from app.core.units import human_bytes

log = logging.getLogger(__name__)

T = TypeVar("T")

BANDWIDTH_SAMPLE_BYTES = 256 * 1024 * 1024
BANDWIDTH_REPEATS = 5
BANDWIDTH_METHOD = "thread-cpu-time"  # how the cached figure was timed; another method is measured again
NVIDIA_SMI_TIMEOUT_SECONDS = 5.0
GIB = 1024**3


def _probe(what: str, probe: Callable[[], T], default: T) -> T:
    """Run one probe; any failure is logged and becomes the default ("unknown")."""
    try:
        return probe()
    except Exception:
        log.debug("Hardware probe '%s' failed", what, exc_info=True)
        return default


@dataclass(frozen=True)
class GpuInfo:
    name: str
    vendor: str  # "nvidia" | "apple"
    total_memory: int | None
    free_memory: int | None
    unified: bool = False  # shares system RAM (Apple silicon): its memory is not extra to the RAM


@dataclass(frozen=True)
class HardwareInfo:
    system: str
    machine: str
    cpu_name: str | None
    total_ram: int | None
    available_ram: int | None
    physical_cores: int | None
    logical_cores: int | None
    cpu_features: tuple[str, ...]
    gpus: tuple[GpuInfo, ...]
    gpu_offload: bool | None  # whether this llama.cpp build can put layers on a GPU at all
    disk_free: int | None  # where models are stored
    memory_bandwidth: float | None  # bytes per second, from a copy of a large array
    bandwidth_cached: bool = False
    fingerprint: str = ""

    @property
    def unified_memory(self) -> bool:
        return any(gpu.unified for gpu in self.gpus)

    @property
    def vram_free(self) -> int | None:
        """Free memory on discrete GPUs; None when there are none or it cannot be read."""
        values = [gpu.free_memory for gpu in self.gpus if not gpu.unified and gpu.free_memory is not None]
        return sum(values) if values else None

    def summary(self) -> str:
        """The one sentence above a model list: free memory, cores, bandwidth, GPU and free disk."""
        parts = []
        if self.available_ram is not None and self.total_ram is not None:
            parts.append(f"{human_bytes(self.available_ram)} of {human_bytes(self.total_ram)} memory free")
        if self.physical_cores:
            parts.append(f"{self.physical_cores} cores")
        if self.memory_bandwidth:
            parts.append(f"{self.memory_bandwidth / 1e9:.1f} GB/s memory bandwidth")
        gpus = [gpu.name for gpu in self.gpus]
        parts.append(("GPU: " + ", ".join(gpus)) if gpus and self.gpu_offload else "CPU only")
        if self.disk_free is not None:
            parts.append(f"{human_bytes(self.disk_free)} disk free")
        return "This computer: " + ", ".join(parts)

    def summary_lines(self) -> list[str]:
        """Every figure on a line of its own (``llamadesk models hardware``, the model manager's tooltip)."""

        def known(value: int | None, text: Callable[[int], str]) -> str:
            return "unknown" if value is None else text(value)

        lines = [
            f"CPU: {self.cpu_name or 'unknown'} ({known(self.physical_cores, str)} physical cores"
            f"{', ' + ' '.join(self.cpu_features) if self.cpu_features else ''})",
            f"Memory: {known(self.available_ram, human_bytes)} available of {known(self.total_ram, human_bytes)}",
        ]
        if self.memory_bandwidth:
            lines.append(f"Memory bandwidth: {self.memory_bandwidth / 1e9:.1f} GB/s (measured)")
        else:
            lines.append("Memory bandwidth: unknown")
        for gpu in self.gpus:
            if gpu.unified:
                lines.append(f"GPU: {gpu.name} (unified memory, shared with the system)")
            else:
                lines.append(
                    f"GPU: {gpu.name}, {known(gpu.free_memory, human_bytes)} free of "
                    f"{known(gpu.total_memory, human_bytes)}"
                )
        if not self.gpus:
            lines.append("GPU: none found")
        offload = {True: "yes", False: "no (CPU-only build)", None: "unknown"}[self.gpu_offload]
        lines.append(f"GPU offload in this llama.cpp build: {offload}")
        lines.append(f"Free disk for models: {known(self.disk_free, human_bytes)}")
        return lines

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gpus"] = [asdict(gpu) for gpu in self.gpus]
        data["cpu_features"] = list(self.cpu_features)
        data["unified_memory"] = self.unified_memory
        data["vram_free"] = self.vram_free
        return data


# -- individual probes ---------------------------------------------------------------------------------------


def _cpu_name() -> str | None:
    if sys.platform.startswith("linux"):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip() or None
    if sys.platform == "darwin":
        result = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return result.stdout.strip() or None
    return platform.processor() or None


def parse_system_info(text: str) -> tuple[str, ...]:
    """CPU features switched on in llama.cpp's system info ("AVX2 = 1 | FMA = 1 | ...")."""
    features: list[str] = []
    for part in text.replace("\n", "|").split("|"):
        if "=" not in part:
            continue
        name, _, value = part.rpartition("=")
        name = name.split(":")[-1].strip()
        if value.strip() == "1" and name and name not in features:
            features.append(name)
    return tuple(features)


def _nvidia_gpus_nvml() -> tuple[GpuInfo, ...] | None:
    """NVML (nvidia-ml-py) when it is installed; None means "try nvidia-smi instead"."""
    try:
        nvml: Any = importlib.import_module("pynvml")
    except ImportError:
        return None
    nvml.nvmlInit()
    try:
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GpuInfo(
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    vendor="nvidia",
                    total_memory=int(memory.total),
                    free_memory=int(memory.free),
                )
            )
        return tuple(gpus)
    finally:
        nvml.nvmlShutdown()


def parse_nvidia_smi(text: str) -> tuple[GpuInfo, ...]:
    """Rows of ``name, memory.total, memory.free`` in MiB (``--format=csv,noheader,nounits``)."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < 3:
            continue

        def mib(value: str) -> int | None:
            try:
                return int(float(value) * 1024 * 1024)
            except ValueError:
                return None  # "[N/A]" on some boards

        gpus.append(
            GpuInfo(name=parts[0], vendor="nvidia", total_memory=mib(parts[1]), free_memory=mib(parts[2]))
        )
    return tuple(gpus)


def _nvidia_gpus_smi() -> tuple[GpuInfo, ...]:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return ()
    result = subprocess.run(
        [executable, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=NVIDIA_SMI_TIMEOUT_SECONDS,
        check=True,
    )
    return parse_nvidia_smi(result.stdout)


def _apple_gpu(total_ram: int | None, available_ram: int | None, cpu_name: str | None) -> tuple[GpuInfo, ...]:
    if sys.platform != "darwin" or platform.machine() != "arm64":
        return ()
    # Metal may use about three quarters of the unified memory by default (recommendedMaxWorkingSetSize).
    total = int(total_ram * 0.75) if total_ram else None
    free = min(available_ram, total) if available_ram is not None and total is not None else None
    return (
        GpuInfo(
            name=cpu_name or "Apple silicon GPU",
            vendor="apple",
            total_memory=total,
            free_memory=free,
            unified=True,
        ),
    )


def _gpus(total_ram: int | None, available_ram: int | None, cpu_name: str | None) -> tuple[GpuInfo, ...]:
    none: tuple[GpuInfo, ...] = ()
    nvidia = _probe("nvml", _nvidia_gpus_nvml, None)
    if nvidia is None:
        nvidia = _probe("nvidia-smi", _nvidia_gpus_smi, none)
    apple = _probe("apple gpu", lambda: _apple_gpu(total_ram, available_ram, cpu_name), none)
    return nvidia + apple


def existing_parent(path: Path) -> Path:
    """The path itself, or its nearest ancestor that exists (a folder not created yet is on that disk)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def disk_free(path: Path | None = None) -> int | None:
    """Free bytes on the disk that holds ``path`` (default: the models folder), or None."""
    target = existing_parent(path or app_paths().models_dir)
    return _probe("disk", lambda: shutil.disk_usage(target).free, None)


def measure_memory_bandwidth(
    sample_bytes: int = BANDWIDTH_SAMPLE_BYTES, repeats: int = BANDWIDTH_REPEATS, budget_seconds: float = 1.0
) -> float:
    """Bytes per second moved by copying a large array, best of a few runs (read + write both count).

    The arrays are written before timing so page faults are not measured. Each copy is timed by the CPU time
    of this thread, not the wall clock: on a busy machine the thread waits for a core between slices, and
    that wait says nothing about the memory (on a shared 2-core machine the wall clock read 9 GB/s where the
    quiet figure is ~31). The best run is the one least disturbed by other programs; the runs stop early
    when the time budget is spent.
    """
    import numpy as np

    started_all = time.perf_counter()
    count = max(1, sample_bytes // 8)
    source = np.ones(count, dtype=np.float64)
    # np.zeros maps untouched pages; filling it first keeps page faults out of the timed copies.
    target = np.empty(count, dtype=np.float64)
    target.fill(2.0)
    best = float("inf")
    for attempt in range(max(2, repeats)):
        started = time.thread_time()
        np.copyto(target, source)
        best = min(best, time.thread_time() - started)
        if attempt >= 1 and time.perf_counter() - started_all > budget_seconds:
            break
    return 2 * count * 8 / max(best, 1e-9)


def machine_fingerprint() -> str:
    """Stable for one machine, different after a RAM or CPU change (which changes the bandwidth)."""
    total_gib = round(psutil.virtual_memory().total / GIB)
    parts = [
        platform.node(),
        platform.system(),
        platform.machine(),
        _probe("cpu name", _cpu_name, None) or "",
        str(total_gib),
        str(psutil.cpu_count(logical=False) or 0),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _bandwidth(
    fingerprint: str, measure: bool, refresh: bool, available_ram: int | None
) -> tuple[float | None, bool]:
    cache_file = app_paths().hardware_cache_file
    cached = read_json(cache_file)
    if not refresh and isinstance(cached, dict):
        entry = cached.get(fingerprint)
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("memory_bandwidth"), (int, float))
            # Figures timed by the wall clock (before "method" was written) read low on a busy machine.
            and (entry.get("method") == BANDWIDTH_METHOD or not measure)
        ):
            return float(entry["memory_bandwidth"]), True
    if not measure:
        return None, False
    sample = BANDWIDTH_SAMPLE_BYTES
    if available_ram is not None:
        # Two arrays of the sample size must fit comfortably in what is free right now.
        sample = max(16 * 1024 * 1024, min(sample, available_ram // 8))
    value = _probe("memory bandwidth", lambda: measure_memory_bandwidth(sample), None)
    if value is None:
        return None, False
    data = cached if isinstance(cached, dict) else {}
    previous = data.get(fingerprint)
    if isinstance(previous, dict) and isinstance(previous.get("memory_bandwidth"), (int, float)):
        # The hardware did not change (same fingerprint): a lower figure only means a busier moment.
        value = max(value, float(previous["memory_bandwidth"]))
    data[fingerprint] = {
        "memory_bandwidth": value,
        "measured_at": time.time(),
        "sample_bytes": sample,
        "method": BANDWIDTH_METHOD,
    }
    _probe("hardware cache write", lambda: write_json_atomic(cache_file, data), None)
    return value, False


@dataclass
class _Memory:
    total: int | None = None
    available: int | None = None


def _memory() -> _Memory:
    memory = psutil.virtual_memory()
    return _Memory(total=int(memory.total), available=int(memory.available))


def probe_hardware(*, measure_bandwidth: bool = True, refresh_bandwidth: bool = False) -> HardwareInfo:
    """Everything at once. Takes well under a second, plus about a second the first time on a machine
    (the bandwidth measurement); ``measure_bandwidth=False`` never measures and uses only the cache."""
    memory = _probe("memory", _memory, _Memory())
    cpu_name = _probe("cpu name", _cpu_name, None)
    fingerprint = _probe("fingerprint", machine_fingerprint, "")
    bandwidth, cached = _bandwidth(fingerprint, measure_bandwidth, refresh_bandwidth, memory.available)
    return HardwareInfo(
        system=platform.system() or "unknown",
        machine=platform.machine() or "unknown",
        cpu_name=cpu_name,
        total_ram=memory.total,
        available_ram=memory.available,
        physical_cores=_probe("physical cores", lambda: psutil.cpu_count(logical=False), None),
        logical_cores=_probe("logical cores", lambda: psutil.cpu_count(logical=True), None),
        cpu_features=_probe("llama.cpp system info", lambda: parse_system_info(system_info()), ()),
        gpus=_probe("gpus", lambda: _gpus(memory.total, memory.available, cpu_name), ()),
        gpu_offload=_probe("gpu offload", gpu_offload_supported, None),
        disk_free=disk_free(),
        memory_bandwidth=bandwidth,
        bandwidth_cached=cached,
        fingerprint=fingerprint,
    )
