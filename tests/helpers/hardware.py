"""A made-up machine for tests that must not depend on the one they run on."""

from __future__ import annotations

from app.core.models.hardware import HardwareInfo

GB = 1000**3


def laptop(available: int = 12 * GB, total: int = 16 * GB, bandwidth: float | None = 40e9) -> HardwareInfo:
    """A CPU-only laptop: 8 cores with AVX2, 16 GB of memory (12 GB free), 40 GB/s, 500 GB of free disk."""
    return HardwareInfo(
        system="Linux",
        machine="x86_64",
        cpu_name="test CPU",
        total_ram=total,
        available_ram=available,
        physical_cores=8,
        logical_cores=16,
        cpu_features=("AVX2",),
        gpus=(),
        gpu_offload=False,
        disk_free=500 * GB,
        memory_bandwidth=bandwidth,
    )
