"""The curated catalog, grouping of a repository's files, the Hub file lists (fake hub) and the menu."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.models.catalog import (
    HubUnavailableError,
    RemoteFile,
    build_menu,
    cached_listing,
    estimated_files,
    fetch_listing,
    find_entry,
    group_gguf_files,
    load_catalog,
    load_listings,
    quant_from_filename,
    search_hub,
)
from app.core.models.fit import FitLabel, SpeedBasis, record_measured_speed
from app.core.models.hardware import HardwareInfo
from app.core.modes import Mode
from app.core.paths import app_paths
from tests.fixtures.fake_hub import FakeHub, use_fake_hub_only

GB = 1000**3


def machine(available: int, total: int, bandwidth: float | None = 40e9) -> HardwareInfo:
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


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    use_fake_hub_only(monkeypatch, tmp_path)
    with FakeHub() as fake:
        yield fake


def test_catalog_spans_small_to_70b_with_llama_first() -> None:
    entries = load_catalog()
    assert len(entries) >= 12
    assert [e.family for e in entries[:4]] == ["Llama 3"] * 4
    assert min(e.parameters for e in entries) < 150e6 and max(e.parameters for e in entries) > 70e9
    assert len({e.repo_id for e in entries}) == len(entries) == len({e.id for e in entries})
    modes = {mode.value for mode in Mode}
    for entry in entries:
        assert set(entry.modes) <= modes and entry.modes
        assert entry.n_heads % entry.n_kv_heads == 0 and entry.head_dim in (64, 96, 128, 256)
        assert entry.license and entry.native_context >= 8192
    assert any(e.modes == ("code",) for e in entries)  # a code-tuned model for Code mode
    assert {e.family for e in entries} >= {"Llama 3", "Qwen2.5", "Mistral", "Gemma", "Phi", "SmolLM2"}
    assert find_entry("bartowski/Llama-3.2-1B-Instruct-GGUF") == find_entry("llama-3.2-1b") is not None


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"),
        ("qwen2.5-7b-instruct-fp16-00003-of-00004.gguf", "F16"),
        ("Q8_0/Llama-3.3-70B-Instruct-Q8_0-00001-of-00002.gguf", "Q8_0"),
        ("SmolLM-135M.Q4_K_S.gguf", "Q4_K_S"),
        ("gemma-3-4b-it-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("Llama-3.2-1B-Instruct-IQ4_XS.gguf", "IQ4_XS"),
        ("Phi-3.5-mini-instruct-f16.gguf", "F16"),
        ("model.gguf", None),
    ],
)
def test_quant_from_filename(name: str, quant: str | None) -> None:
    assert quant_from_filename(name) == quant


def test_split_files_are_one_model_and_incomplete_sets_are_left_out() -> None:
    files = [
        RemoteFile("Big-Q8_0/Big-Q8_0-00002-of-00002.gguf", 60, "b"),
        RemoteFile("Big-Q8_0/Big-Q8_0-00001-of-00002.gguf", 50, "a"),
        RemoteFile("Big-Q6_K-00001-of-00002.gguf", 40, "c"),  # part 2 missing
        RemoteFile("Big-Q4_K_M.gguf", 30, "d"),
        RemoteFile("mmproj-Big-f16.gguf", 5, "e"),
        RemoteFile("README.md", 1, None),
    ]
    options = group_gguf_files(files)
    assert [o.quant for o in options] == ["Q4_K_M", "Q8_0"]
    split = options[1]
    assert split.is_split and split.size == 110
    assert [f.basename for f in split.files] == [
        "Big-Q8_0-00001-of-00002.gguf",
        "Big-Q8_0-00002-of-00002.gguf",
    ]
    assert split.first_file == "Big-Q8_0-00001-of-00002.gguf"
    assert split.display_name == "Big-Q8_0.gguf (2 parts)"


def test_estimated_files_are_marked() -> None:
    entry = find_entry("llama-3.1-8b")
    assert entry is not None
    options = {o.quant: o for o in estimated_files(entry)}
    assert options["Q4_K_M"].estimated and options["Q4_K_M"].size == 4_918_535_014
    assert "estimated" in options["Q4_K_M"].display_name


def test_file_list_comes_from_the_hub_and_is_cached(hub: FakeHub) -> None:
    q4 = b"q4" * 1000
    hub.add_repo("org/Model-GGUF", {"Model-Q4_K_M.gguf": q4, "Model-Q8_0.gguf": b"q8" * 2000, "x.md": b"x"})
    listing = fetch_listing("org/Model-GGUF", endpoint=hub.url)
    assert listing.commit == hub.repos["org/Model-GGUF"].commit
    option = listing.option("q4_k_m")
    assert option is not None and not option.estimated
    assert option.files == (RemoteFile("Model-Q4_K_M.gguf", 2000, hashlib.sha256(q4).hexdigest()),)
    assert any(r.path == "/api/models/org/Model-GGUF" for r in hub.requests)

    hub.stop()  # the Hub goes away: the cached list is still there
    cached = cached_listing("org/Model-GGUF")
    assert cached is not None and cached.option("Q4_K_M") == option
    result = load_listings(["org/Model-GGUF"], refresh=True, endpoint=hub.url)
    assert result.listings["org/Model-GGUF"].option("Q8_0") is not None
    assert "cannot be reached" in result.problem


def test_offline_uses_the_cache_and_says_why() -> None:
    # The test suite runs with HF_HUB_OFFLINE=1.
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        fetch_listing("org/Anything-GGUF")
    result = load_listings(["org/Anything-GGUF"])
    assert result.listings == {} and "HF_HUB_OFFLINE" in result.problem


def test_search_finds_gguf_repositories(hub: FakeHub) -> None:
    hub.add_repo("someone/Llama-3.2-3B-Instruct-GGUF", {"a-Q4_K_M.gguf": b"a"}, downloads=10)
    hub.add_repo("other/Llama-3.2-1B-Instruct-GGUF", {"b-Q4_K_M.gguf": b"b"}, downloads=99, gated=True)
    hub.add_repo("other/Mistral-GGUF", {"c-Q4_K_M.gguf": b"c"})
    found = search_hub("llama-3.2", endpoint=hub.url)
    assert [m.repo_id for m in found] == [
        "other/Llama-3.2-1B-Instruct-GGUF",
        "someone/Llama-3.2-3B-Instruct-GGUF",
    ]
    assert found[0].gated and found[0].downloads == 99
    search = next(r for r in hub.requests if r.path == "/api/models")
    assert search.method == "GET"


def test_menu_on_a_16_gb_laptop() -> None:
    rows = {row.entry.id: row for row in build_menu(machine(12 * GB, 16 * GB), 8192)}
    llama8 = rows["llama-3.1-8b"]
    q4 = llama8.option("Q4_K_M")
    assert q4 is not None and q4.label is FitLabel.RUNS_WELL and q4.files.estimated
    assert q4.speed.basis is SpeedBasis.ESTIMATED and q4.speed.tokens_per_second is not None
    assert llama8.recommendation.quant in ("Q5_K_M", "Q6_K", "Q8_0")
    assert rows["llama-3.3-70b"].label is FitLabel.TOO_LARGE
    assert rows["llama-3.3-70b"].recommendation.quant is None
    assert rows["smollm2-135m"].recommendation.quant == "Q8_0"
    # Gemma 2 is trained for 8k: planning 32k is capped at its native context.
    assert (
        build_menu(machine(12 * GB, 16 * GB), 32768, entries=[rows["gemma-2-2b"].entry])[0].context_size
        == 8192
    )


def test_menu_follows_context_size_and_loaded_model() -> None:
    entry = find_entry("llama-3.1-8b")
    assert entry is not None
    small = build_menu(machine(7 * GB, 8 * GB), 2048, entries=[entry])[0]
    large = build_menu(machine(7 * GB, 8 * GB), 131072, entries=[entry])[0]
    assert small.option("Q4_K_M").label is FitLabel.RUNS_WELL  # type: ignore[union-attr]
    # 16 GiB of KV cache at 128k tokens: no longer fits in 8 GB.
    assert large.option("Q4_K_M").label is FitLabel.TOO_LARGE  # type: ignore[union-attr]
    # About 6.1 GB needed at 4k: 3 GB free is tight; with a loaded 5 GB model counted as freed it runs well.
    busy = build_menu(machine(3 * GB, 8 * GB), 4096, entries=[entry])[0]
    freed = build_menu(machine(3 * GB, 8 * GB), 4096, entries=[entry], reclaimable=5 * GB)[0]
    assert busy.option("Q4_K_M").label is FitLabel.TIGHT  # type: ignore[union-attr]
    assert freed.option("Q4_K_M").label is FitLabel.RUNS_WELL  # type: ignore[union-attr]


def test_menu_uses_real_files_measured_speeds_and_marks_installed(hub: FakeHub) -> None:
    entry = find_entry("smollm2-135m")
    assert entry is not None
    hub.add_repo(entry.repo_id, {"SmolLM2-135M-Instruct-Q4_K_M.gguf": b"x" * 105_000})
    listing = fetch_listing(entry.repo_id, endpoint=hub.url)
    installed = (
        app_paths().models_dir / "bartowski__SmolLM2-135M-Instruct-GGUF" / "SmolLM2-135M-Instruct-Q4_K_M.gguf"
    )
    installed.parent.mkdir(parents=True)
    installed.write_bytes(b"x" * 105_000)
    record_measured_speed(installed, entry.parameters, 105_000, 123.0)
    from app.core.models.fit import measured_speeds

    (row,) = build_menu(
        machine(12 * GB, 16 * GB),
        4096,
        entries=[entry],
        listings={entry.repo_id: listing},
        speeds=measured_speeds(),
    )
    (option,) = row.options
    assert not row.sizes_estimated and option.files.size == 105_000 and option.size_text == "105.0 KB"
    assert option.installed == installed
    assert option.speed.tokens_per_second == 123.0 and option.speed.basis is SpeedBasis.MEASURED
    assert row.as_dict()["options"][0]["installed"] == str(installed)


def test_cli_recommend_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    assert main(["models", "recommend", "--json", "--ctx", "2048"]) == 0
    menu = json.loads(capsys.readouterr().out)
    assert menu["hardware"]["total_ram"] > 0
    recommended = {row["id"]: row for row in menu["models"]}
    assert "smollm2-135m" in recommended  # runs well on any machine that runs the tests
    assert all(row["recommended_quant"] for row in menu["models"])
    assert all(row["context_size"] <= 2048 for row in menu["models"])

    assert main(["models", "list", "--all"]) == 0
    captured = capsys.readouterr()
    assert "Llama 3.3 70B Instruct" in captured.out and "~" in captured.out and "tokens/s" in captured.out
    assert "HF_HUB_OFFLINE" in captured.err  # the suite runs offline: estimates, and a sentence saying why
