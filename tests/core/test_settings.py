from __future__ import annotations

import json
from pathlib import Path

from app.core import settings as store
from app.core.modes import Mode, preset_for
from app.core.paths import app_paths


def test_missing_file_gives_defaults() -> None:
    loaded = store.load()
    assert loaded.settings == store.Settings()
    assert loaded.warnings == []


def test_round_trip_keeps_values() -> None:
    settings = store.Settings(context_size=8192, theme="dark", mode_overrides={"code": {"temperature": 0.0}})
    store.save(settings)
    assert store.load().settings == settings


def test_missing_keys_are_filled_and_unknown_keys_kept() -> None:
    path = app_paths().settings_file
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"threads": 3, "from_a_newer_version": [1, 2]}))
    loaded = store.load()
    assert loaded.settings.threads == 3
    assert loaded.settings.context_size == store.Settings().context_size
    store.save(loaded.settings)
    assert json.loads(path.read_text())["from_a_newer_version"] == [1, 2]


def test_wrong_types_fall_back_per_field() -> None:
    path = app_paths().settings_file
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"threads": "many", "context_size": 2048, "theme": "purple"}))
    loaded = store.load()
    assert loaded.settings.threads == 0
    assert loaded.settings.context_size == 2048
    assert loaded.settings.theme == "system"
    assert len(loaded.warnings) == 2


def test_broken_file_is_set_aside_not_deleted() -> None:
    path = app_paths().settings_file
    path.parent.mkdir(parents=True)
    path.write_text("{ this is not json")
    loaded = store.load()
    assert loaded.settings == store.Settings()
    assert "damaged" in loaded.warnings[0]
    kept = list(path.parent.glob("settings.json.broken-*"))
    assert len(kept) == 1
    assert kept[0].read_text() == "{ this is not json"
    assert str(kept[0]) in loaded.warnings[0]


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "s.json"
    store.save(store.Settings(threads=2), target)
    store.save(store.Settings(threads=4), target)
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_mode_overrides_apply_on_top_of_presets() -> None:
    preset = preset_for(Mode.CODE, {"temperature": 0.5, "system_prompt": "Be terse.", "max_tokens": "x"})
    assert preset.sampling.temperature == 0.5
    assert preset.system_prompt == "Be terse."
    assert preset.sampling.max_tokens == preset_for(Mode.CODE).sampling.max_tokens
    assert preset_for(Mode.SUMMARIZE).sampling.temperature < preset_for(Mode.CHAT).sampling.temperature
