from __future__ import annotations

import contextlib
import os
import threading
import time
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


def test_scratch_home_is_removed_even_while_a_thread_still_writes_into_it(llamadesk_home: Path) -> None:
    # A closed window's library thread may create its database files just after the window has gone.
    writing = threading.Event()

    def late_writer(folder: Path) -> None:
        writing.set()
        for index in range(20):
            with contextlib.suppress(OSError):
                (folder / "data").mkdir(exist_ok=True)
                (folder / "data" / f"library-{index}.sqlite-wal").write_text("x")
            time.sleep(0.01)

    with scratch_home("llamadesk-test-") as scratch:
        thread = threading.Thread(target=late_writer, args=(scratch,))
        thread.start()
        writing.wait()
        time.sleep(0.05)  # the block ends while the writer is still at work
    assert not scratch.exists()
    thread.join()
