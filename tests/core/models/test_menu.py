"""The model menu: fit, speed and the recommended quantization for a made-up laptop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.models.catalog import (
    find_entry,
)
from app.core.models.fit import FitLabel, SpeedBasis, measured_speeds, record_measured_speed
from app.core.models.hub import fetch_listing
from app.core.models.menu import build_menu
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
