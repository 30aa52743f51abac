from __future__ import annotations

import json
from pathlib import Path

import pytest

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


def write_settings(raw: object) -> Path:
    path = app_paths().settings_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw))
    return path


def test_out_of_range_values_fall_back_per_key_with_one_warning_each() -> None:
    write_settings(
        {
            "context_size": -5,
            "threads": 100_000,
            "gpu_layers": -7,
            "mode": "poetry",
            "imported_models": ["/models/a.gguf", 3],
            "last_model": "/models/b.gguf",
        }
    )
    loaded = store.load()
    print(*loaded.warnings, sep="\n")
    defaults = store.Settings()
    assert loaded.settings.context_size == defaults.context_size
    assert loaded.settings.threads == defaults.threads
    assert loaded.settings.gpu_layers == defaults.gpu_layers
    assert loaded.settings.mode == defaults.mode
    assert loaded.settings.imported_models == []
    assert loaded.settings.last_model == "/models/b.gguf"  # a good key next to bad ones is kept
    assert len(loaded.warnings) == 5
    assert any("context size must be 0 (the model's own) or between 256" in w for w in loaded.warnings)
    assert any("threads must be between 0" in w and "100,000" in w for w in loaded.warnings)


def test_context_size_zero_means_the_models_own_and_is_kept() -> None:
    write_settings({"context_size": 0, "threads": 0})
    loaded = store.load()
    assert (loaded.settings.context_size, loaded.settings.threads, loaded.warnings) == (0, 0, [])


def test_mode_overrides_are_checked_per_mode_and_per_value() -> None:
    write_settings(
        {
            "mode_overrides": {
                "chat": 5,
                "code": {"temperature": float("nan"), "max_tokens": 300, "top_p": 0},
                "summarize": {"system_prompt": "Be brief.", "colour": "red"},
                "poetry": {"temperature": 1.0},
            }
        }
    )
    loaded = store.load()
    print(*loaded.warnings, sep="\n")
    assert loaded.settings.mode_overrides == {
        "code": {"max_tokens": 300},
        "summarize": {"system_prompt": "Be brief."},
    }
    assert len(loaded.warnings) == 4  # chat, code, summarize, the unknown mode: one each
    # What the first Send does with them: the presets build, with the valid changes on top.
    for mode in Mode:
        preset = preset_for(mode, loaded.settings.mode_overrides.get(mode.value, {}))
        assert preset.sampling.temperature == preset_for(mode).sampling.temperature
    assert preset_for(Mode.CODE, loaded.settings.mode_overrides["code"]).sampling.max_tokens == 300


def test_a_nan_in_the_file_is_refused() -> None:
    # json.dumps writes NaN and Infinity, and json.loads reads them back: a hand-edited file can hold them.
    path = write_settings({})
    path.write_text('{"mode_overrides": {"chat": {"temperature": Infinity}}, "context_size": 1e400}')
    loaded = store.load()
    assert loaded.settings.mode_overrides == {}
    assert loaded.settings.context_size == store.Settings().context_size
    assert len(loaded.warnings) == 2


def test_the_serve_switch_settings_are_checked() -> None:
    kept, warnings = store.from_dict({"serve_enabled": True, "serve_port": 9000, "serve_save_history": True})
    assert (kept.serve_enabled, kept.serve_port, kept.serve_save_history) == (
        True,
        9000,
        True,
    ) and not warnings
    for bad in (0, 70000, "8080", True):
        loaded, warnings = store.from_dict({"serve_port": bad})
        assert loaded.serve_port == 8080 and len(warnings) == 1, (bad, warnings)


def test_the_web_apps_allowed_are_exact_origins_written_as_browsers_send_them() -> None:
    kept, warnings = store.from_dict(
        {"serve_allowed_origins": ["https://Chat.Example.com/", "http://localhost:3000", "https://a.org:443"]}
    )
    assert kept.serve_allowed_origins == [
        "https://chat.example.com",
        "http://localhost:3000",
        "https://a.org",
    ]
    assert not warnings
    for bad in (
        ["https://chat.example.com/app"],
        ["null"],
        ["*"],
        ["chat.example.com"],
        "https://a.org",
        [3],
    ):
        loaded, warnings = store.from_dict({"serve_allowed_origins": bad})
        assert loaded.serve_allowed_origins == [] and len(warnings) == 1, (bad, warnings)
        print(warnings[0])
    # One per line or separated by commas, as typed in Settings: the origins, and a sentence for each mistake.
    origins, problems = store.split_web_origins(
        "https://a.org, http://b.net:8000\nfile:///x\n\nhttps://a.org"
    )
    assert origins == ["https://a.org", "http://b.net:8000"]
    assert len(problems) == 1 and "'file:///x'" in problems[0] and problems[0].endswith(".")


def test_remote_engine_settings_are_checked_and_the_key_private(caplog: pytest.LogCaptureFixture) -> None:
    path = app_paths().settings_file
    remote = store.Settings(engine="server", remote_url="http://gpu-box:8000/v1", remote_api_key="sk-secret")
    store.save(remote)
    assert path.stat().st_mode & 0o777 == 0o600  # the API key is readable by its owner only
    assert store.load().settings.remote_api_key == "sk-secret"
    path.write_text(
        json.dumps(
            {
                "engine": "cloud",
                "remote_url": "gpu-box:8000",
                "remote_read_timeout": 1,
                "remote_api_key": ["sk-secret"],
            }
        ),
        encoding="utf-8",
    )
    loaded = store.load()
    defaults = store.Settings()
    assert (loaded.settings.engine, loaded.settings.remote_url, loaded.settings.remote_read_timeout) == (
        defaults.engine,
        defaults.remote_url,
        defaults.remote_read_timeout,
    )
    assert len(loaded.warnings) == 4
    assert "sk-secret" not in " ".join(loaded.warnings) + caplog.text


def test_a_setting_saved_under_its_old_name_is_read_under_its_new_one(llamadesk_home: Path) -> None:
    settings, warnings = store.from_dict({"state_cache_mb": 512})
    assert settings.saved_states_mb == 512 and warnings == []
    assert "state_cache_mb" not in store.to_dict(settings)
    newer, _ = store.from_dict({"state_cache_mb": 512, "saved_states_mb": 256})
    assert newer.saved_states_mb == 256
