"""Every directory LlamaDesk reads or writes, from one place.

The locations follow each platform's conventions (platformdirs). Setting ``LLAMADESK_HOME`` moves all of
them under one folder: portable installs use it, and the test suite points it at a temporary directory so a
test never touches the real home.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from app import APP_NAME

HOME_ENV = "LLAMADESK_HOME"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppPaths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    log_dir: Path
    models_dir: Path

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def history_db(self) -> Path:
        return self.data_dir / "history.sqlite3"

    @property
    def library_db(self) -> Path:
        """Every library's files, passages and vectors (app.core.library)."""
        return self.data_dir / "library.sqlite3"

    @property
    def downloads_dir(self) -> Path:
        """Partial downloads live beside the models so the final rename never crosses a filesystem."""
        return self.models_dir / ".partial"

    @property
    def downloads_queue_file(self) -> Path:
        return self.data_dir / "downloads.json"

    @property
    def hardware_cache_file(self) -> Path:
        return self.cache_dir / "hardware.json"

    @property
    def summary_cache_dir(self) -> Path:
        return self.cache_dir / "summaries"

    @property
    def saved_states_dir(self) -> Path:
        """Conversations' saved llama.cpp states (app.core.llm.saved_state_store)."""
        return self.cache_dir / "states"

    def ensure(self) -> AppPaths:
        """Create the directories (owner-only: conversations and models are private)."""
        for directory in (self.config_dir, self.data_dir, self.cache_dir, self.log_dir, self.models_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self


def app_paths() -> AppPaths:
    """The directories for this process, read from the environment each time it is asked."""
    home = os.environ.get(HOME_ENV, "").strip()
    if home:
        root = Path(home).expanduser().resolve()
        return AppPaths(
            config_dir=root / "config",
            data_dir=root / "data",
            cache_dir=root / "cache",
            log_dir=root / "logs",
            models_dir=root / "models",
        )
    dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
    data_dir = Path(dirs.user_data_dir)
    return AppPaths(
        config_dir=Path(dirs.user_config_dir),
        data_dir=data_dir,
        cache_dir=Path(dirs.user_cache_dir),
        log_dir=Path(dirs.user_log_dir),
        models_dir=data_dir / "models",
    )


@contextlib.contextmanager
def scratch_home(prefix: str, *, removal_wait: float = 5.0) -> Iterator[Path]:
    """Point every path at a throwaway folder for the duration, then put the user's home back.

    For the self-test and the window benchmark: a window saves its settings and history as it closes, and a
    check must leave the user's own untouched.
    """
    real_home = os.environ.get(HOME_ENV)
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ[HOME_ENV] = str(scratch)
    try:
        yield scratch
    finally:
        if real_home is None:
            os.environ.pop(HOME_ENV, None)
        else:
            os.environ[HOME_ENV] = real_home
        remove_scratch(scratch, removal_wait)


def remove_scratch(folder: Path, wait: float) -> None:
    """Remove a throwaway folder that threads may still be writing to for a moment.

    A closed window's background threads (the library's database connection, a paused download) close their
    files on their own threads, after the window has gone: one removal can meet a file created behind it
    ("Directory not empty"). Removal is retried while those threads finish; what is still left is logged, as
    a leftover folder in the temporary directory is no reason to fail the check that used it.
    """
    deadline = time.monotonic() + wait
    while True:
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        if time.monotonic() >= deadline:
            log.warning(
                "could not remove the scratch folder %s; threads still running: %s",
                folder,
                [thread.name for thread in threading.enumerate()],
            )
            return
        time.sleep(0.05)


def resources_dir() -> Path:
    """The read-only resources (catalog, icons, styles), in a source checkout or inside a bundle."""
    bundle_root = getattr(sys, "_MEIPASS", None)
    if bundle_root:
        return Path(bundle_root) / "resources"
    return Path(__file__).resolve().parent.parent.parent / "resources"
