"""Starting the window: logging, the QApplication, settings, history, and the self-test."""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from app import APP_ID, APP_NAME, __version__
from app.core import settings as settings_store
from app.core.errors import UserError
from app.core.paths import app_paths, resources_dir, scratch_home

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

log = logging.getLogger(__name__)


def configure_logging() -> Path:
    """Log to a rotating file in the log folder (bugs keep their tracebacks there), warnings to stderr."""
    log_dir = app_paths().ensure().log_dir
    log_file = log_dir / "llamadesk.log"
    handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return log_file


def _make_application() -> object:
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(APP_ID)
    icon = resources_dir() / "icons" / "llamadesk.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    return app


def run_gui(args: argparse.Namespace) -> int:
    if getattr(args, "self_test", False):
        return self_test(getattr(args, "model", None))
    configure_logging()
    from PySide6.QtWidgets import QApplication, QMessageBox

    app = _make_application()
    assert isinstance(app, QApplication)
    try:
        window = open_main_window(args)
    except UserError as exc:
        QMessageBox.critical(None, APP_NAME, str(exc))
        return 1
    window.show()
    return int(app.exec())


def open_main_window(args: argparse.Namespace) -> MainWindow:
    """The main window, built as ``llamadesk [--model PATH] [--no-model]`` asks; raises UserError when the
    history cannot be opened."""
    from app.core.history.store import HistoryStore
    from app.core.llm.engine import import_backend
    from app.ui.main_window import MainWindow

    try:
        import_backend()
    except Exception:  # a broken llama.cpp build: the window still opens, and a model load says what failed
        log.exception("llama.cpp's Python bindings could not be imported")
    loaded = settings_store.load()
    store = HistoryStore()
    return MainWindow(
        settings=loaded.settings,
        store=store,
        startup_messages=loaded.warnings,
        initial_model=str(Path(args.model).expanduser()) if args.model else None,
        open_default_model=not getattr(args, "no_model", False),
    )


def self_test(model: str | None) -> int:
    """Load a model, generate a few tokens, open and close the main window; print each step's outcome."""
    from app.core.llm.engine import Engine, LoadOptions, backend_description
    from app.core.models.inventory import default_model
    from app.core.modes import SamplingOptions

    failures = 0

    def step(name: str, ok: bool, detail: str) -> None:
        nonlocal failures
        failures += 0 if ok else 1
        print(f"[{'ok' if ok else 'FAILED'}] {name}: {detail}", flush=True)

    print(f"{APP_NAME} {__version__} self-test", flush=True)
    print(f"  {backend_description()}", flush=True)
    path = Path(model).expanduser() if model else default_model()
    if path is None:
        step("model", False, "no model given (--model PATH) and none installed")
        return 1
    engine = Engine()
    try:
        started = time.perf_counter()
        info = engine.load(path, LoadOptions(context_size=1024))
        step("load", True, f"{info.name} ({info.quantization}) in {time.perf_counter() - started:.1f} s")
        reply = engine.chat(
            [{"role": "user", "content": "Say hello in five words."}],
            SamplingOptions(temperature=0.0, max_tokens=16),
        )
        text = reply.collect()
        step(
            "generate",
            reply.stats.generated_tokens > 0,
            f"{reply.stats.generated_tokens} tokens: {text.strip()!r}",
        )
    except UserError as exc:
        step("load", False, str(exc))
    finally:
        engine.unload()

    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    # The window step runs in a throwaway home: closing a window saves settings and empties the trash.
    with scratch_home("llamadesk-self-test-"):
        try:
            from PySide6.QtWidgets import QApplication

            from app.core.history.store import HistoryStore
            from app.ui.main_window import MainWindow
            from app.ui.workers import EngineClient

            app = _make_application()
            assert isinstance(app, QApplication)
            window = MainWindow(
                settings=settings_store.Settings(), store=HistoryStore(), client=EngineClient(Engine())
            )
            window.show()
            app.processEvents()
            shown = window.isVisible()
            window.close()
            app.processEvents()
            step("window", shown, f"opened and closed on the '{app.platformName()}' platform")
        except Exception as exc:
            log.exception("self-test window step failed")
            step("window", False, f"{type(exc).__name__}: {exc}")
    print("Self-test passed." if failures == 0 else f"Self-test failed: {failures} step(s).", flush=True)
    return 0 if failures == 0 else 1
