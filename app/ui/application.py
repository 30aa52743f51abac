"""Starting the window: logging, the QApplication, settings and history."""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app import APP_ID, APP_NAME, __version__
from app.core import settings as settings_store
from app.core.errors import UserError
from app.core.paths import app_paths, resources_dir

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


def make_application() -> object:
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from app.ui.wheel_guard import install_wheel_guard

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    install_wheel_guard(app)  # a wheel passing over a spin box scrolls the page instead of changing it
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(APP_ID)
    icon = resources_dir() / "icons" / "llamadesk.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    return app


def run_gui(args: argparse.Namespace) -> int:
    log_file = configure_logging()
    from PySide6.QtWidgets import QApplication, QMessageBox

    from app.core.crash import install_crash_handlers
    from app.ui.crash import close_on_quit_signals, install_window_crash_handlers

    install_crash_handlers(log_file)  # until the window exists, an uncaught error is logged only
    app = make_application()
    assert isinstance(app, QApplication)
    try:
        window = open_main_window(args)
    except UserError as exc:
        QMessageBox.critical(None, APP_NAME, str(exc))
        return 1
    except (
        Exception
    ) as exc:  # a bug at start-up: a dialog that says where its traceback is, not a silent exit
        log.exception("The window could not start")
        QMessageBox.critical(None, APP_NAME, startup_failure_sentence(exc, log_file))
        return 1
    install_window_crash_handlers(log_file, window.show_error)
    close_on_quit_signals(window)
    window.show()
    return int(app.exec())


def startup_failure_sentence(error: BaseException, log_file: Path) -> str:
    return (
        f"{APP_NAME} could not start: something went wrong inside it ({type(error).__name__}: {error}). This is a "
        f"bug; please report it. The details are in {log_file}."
    )


def open_main_window(args: argparse.Namespace) -> MainWindow:
    """The main window, built as ``llamadesk [--model PATH] [--no-model]`` asks; raises UserError when the
    history cannot be opened."""
    from app.core.history.store import HistoryStore
    from app.core.llm.bindings import import_backend
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
