from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.core.paths import app_paths, scratch_home


def test_every_directory_lives_under_llamadesk_home(llamadesk_home: Path) -> None:
    paths = app_paths()
    for directory in (paths.config_dir, paths.data_dir, paths.cache_dir, paths.log_dir, paths.models_dir):
        assert directory.is_relative_to(llamadesk_home)
    assert paths.settings_file.is_relative_to(llamadesk_home)
    assert paths.history_db.is_relative_to(llamadesk_home)


def test_without_override_platformdirs_decides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LLAMADESK_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    paths = app_paths()
    assert paths.config_dir == tmp_path / "xdg-config" / "LlamaDesk"
    assert paths.data_dir == tmp_path / "xdg-data" / "LlamaDesk"


def test_ensure_creates_private_directories(llamadesk_home: Path) -> None:
    paths = app_paths().ensure()
    assert paths.data_dir.is_dir()
    assert paths.data_dir.stat().st_mode & 0o077 == 0


def test_scratch_home_is_used_then_removed_and_the_real_home_restored(llamadesk_home: Path) -> None:
    with scratch_home("llamadesk-test-") as scratch:
        assert app_paths().config_dir == scratch.resolve() / "config"
        app_paths().ensure().settings_file.write_text("{}")
    assert not scratch.exists()
    assert app_paths().config_dir == llamadesk_home / "config"


def test_scratch_home_restores_an_unset_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLAMADESK_HOME")
    with pytest.raises(RuntimeError), scratch_home("llamadesk-test-"):
        raise RuntimeError("a failing check")
    assert "LLAMADESK_HOME" not in os.environ
