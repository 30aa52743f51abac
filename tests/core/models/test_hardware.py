"""The hardware probe on this machine, its cache, and how it degrades when a probe cannot run."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from app.core.models.hardware import (
    GpuInfo,
    disk_free,
    machine_fingerprint,
    parse_nvidia_smi,
    parse_system_info,
    probe_hardware,
    read_json,
    write_json_atomic,
)
from app.core.paths import app_paths
from tests.helpers.hardware import GB, laptop


def test_probe_reads_this_machine_and_caches_the_bandwidth() -> None:
    first = probe_hardware()
    assert first.total_ram is not None and 0 < (first.available_ram or 0) <= first.total_ram
    assert (first.physical_cores or 0) >= 1 and (first.logical_cores or 0) >= (first.physical_cores or 0)
    assert first.disk_free is not None and first.disk_free > 0
    assert first.gpu_offload in (True, False)  # this llama.cpp build answers
    assert any(feature in first.cpu_features for feature in ("SSE3", "AVX", "AVX2", "NEON"))
    assert first.memory_bandwidth is not None and first.memory_bandwidth > 1e8
    assert not first.bandwidth_cached
    cache = read_json(app_paths().hardware_cache_file)
    assert cache[machine_fingerprint()]["memory_bandwidth"] == first.memory_bandwidth

    second = probe_hardware()
    assert second.bandwidth_cached and second.memory_bandwidth == first.memory_bandwidth
    lines = second.summary_lines()
    assert any(line.startswith("Memory bandwidth:") and "GB/s" in line for line in lines)
    assert json.loads(json.dumps(second.as_dict()))["fingerprint"] == machine_fingerprint()
    print(f"\nmemory bandwidth here: {first.memory_bandwidth / 1e9:.1f} GB/s")


def test_bandwidth_of_another_machine_is_not_used() -> None:
    write_json_atomic(app_paths().hardware_cache_file, {"someone-else": {"memory_bandwidth": 1.0}})
    assert probe_hardware(measure_bandwidth=False).memory_bandwidth is None
    remeasured = probe_hardware(refresh_bandwidth=True)
    assert remeasured.memory_bandwidth is not None and remeasured.memory_bandwidth > 1.0


def test_a_figure_timed_by_the_wall_clock_is_measured_again_by_cpu_time() -> None:
    # What an earlier version cached on this machine while other programs held the CPU: 11.2 GB/s.
    old = {"memory_bandwidth": 11.2e9, "measured_at": 1.0, "sample_bytes": 268435456}
    write_json_atomic(app_paths().hardware_cache_file, {machine_fingerprint(): old})
    assert probe_hardware(measure_bandwidth=False).memory_bandwidth == 11.2e9  # no measuring asked: kept
    again = probe_hardware()
    assert not again.bandwidth_cached and again.memory_bandwidth is not None
    assert again.memory_bandwidth >= 11.2e9  # the same hardware: a lower figure is only a busier moment
    assert read_json(app_paths().hardware_cache_file)[machine_fingerprint()]["method"] == "thread-cpu-time"
    assert probe_hardware().bandwidth_cached


def test_a_broken_cache_file_is_measured_again() -> None:
    path = app_paths().hardware_cache_file
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert probe_hardware().memory_bandwidth is not None


def test_llama_system_info_features() -> None:
    text = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 0 | FMA = 1 | "
    assert parse_system_info(text) == ("SSE3", "AVX", "AVX2", "FMA")
    assert parse_system_info("") == ()


def test_nvidia_smi_rows() -> None:
    (first, second) = parse_nvidia_smi("NVIDIA GeForce RTX 4090, 24564, 23000\nTesla T4, [N/A], [N/A]\n")
    assert first.name == "NVIDIA GeForce RTX 4090" and first.total_memory == 24564 * 1024 * 1024
    assert first.free_memory == 23000 * 1024 * 1024 and not first.unified
    assert second.total_memory is None and second.free_memory is None


def fake_nvidia_smi(folder: Path, script: str) -> None:
    """A stand-in nvidia-smi (there is no NVIDIA GPU here): a shell script on PATH."""
    folder.mkdir()
    executable = folder / "nvidia-smi"
    executable.write_text("#!/bin/sh\n" + script)
    executable.chmod(executable.stat().st_mode | stat.S_IXUSR)


def test_gpus_from_nvidia_smi_and_degrading_to_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert probe_hardware(measure_bandwidth=False).gpus == ()  # none on this machine, and no crash

    fake_nvidia_smi(tmp_path / "working", "echo 'Fake GPU, 8192, 6000'\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'working'}{os.pathsep}{os.environ['PATH']}")
    info = probe_hardware(measure_bandwidth=False)
    assert [gpu.name for gpu in info.gpus] == ["Fake GPU"]
    assert info.vram_free == 6000 * 1024 * 1024

    fake_nvidia_smi(tmp_path / "broken", "echo 'NVIDIA-SMI has failed' >&2; exit 9\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'broken'}{os.pathsep}{os.environ['PATH']}")
    broken = probe_hardware(measure_bandwidth=False)
    assert broken.gpus == () and broken.vram_free is None
    assert "GPU: none found" in broken.summary_lines()


def test_disk_free_of_a_folder_not_created_yet(tmp_path: Path) -> None:
    free = disk_free(tmp_path / "does" / "not" / "exist")
    assert free is not None and free > 0


def test_one_sentence_describes_the_machine() -> None:
    assert laptop().summary() == (
        "This computer: 12.0 GB of 16.0 GB memory free, 8 cores, 40.0 GB/s memory bandwidth, CPU only, "
        "500.0 GB disk free"
    )
    gpu = GpuInfo("Fake GPU", "nvidia", total_memory=8 * GB, free_memory=6 * GB)
    with_gpu = replace(laptop(bandwidth=None), available_ram=None, gpus=(gpu,), gpu_offload=True)
    assert with_gpu.summary() == "This computer: 8 cores, GPU: Fake GPU, 500.0 GB disk free"
    # A GPU this llama.cpp build cannot use does not count.
    assert "CPU only" in replace(with_gpu, gpu_offload=False).summary()
