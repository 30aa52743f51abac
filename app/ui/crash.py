"""The window's side of the crash handler and of quitting on a signal.

An uncaught error's sentence may come from any thread, so it reaches the window's banner through a queued
signal. SIGINT and SIGTERM close the window as its close button does (the reply under way is kept, marked
stopped): Python runs a signal handler only when the interpreter gets control, so a timer wakes it up regularly
while Qt's event loop sits in C.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication, QWidget

from app.core.crash import install_crash_handlers
from app.ui.background import keep_until_deleted

SIGNAL_CHECK_MS = 200


class BugReporter(QObject):
    """Carries an uncaught error's sentence to the GUI thread, where it is shown."""

    reported = Signal(str)


def install_window_crash_handlers(log_file: Path, show_error: Callable[[str], None]) -> BugReporter:
    """Uncaught errors go to the log and, as a sentence, to ``show_error`` (called on the GUI thread).

    The reporter has no Qt parent and is kept for the rest of the process: the hooks are process-wide and may
    emit from any thread, also while the window is being deleted."""
    reporter = BugReporter()
    keep_until_deleted(reporter)
    reporter.reported.connect(show_error)
    install_crash_handlers(log_file, reporter.reported.emit)
    return reporter


def close_on_quit_signals(window: QWidget) -> QTimer:
    """SIGINT and SIGTERM close ``window`` (and so quit), from the event loop rather than from inside whatever
    Python code the signal interrupted."""

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        QTimer.singleShot(0, window.close)
        QTimer.singleShot(0, QApplication.quit)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    wake = QTimer(window)
    wake.timeout.connect(lambda: None)  # each tick returns to the interpreter, which runs pending handlers
    wake.start(SIGNAL_CHECK_MS)
    return wake
