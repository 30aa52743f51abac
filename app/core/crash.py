"""The last line of defence: an error nothing caught is logged with its traceback and reported in a sentence, and a
native crash (an abort or a segfault inside llama.cpp) leaves its Python stack in a file beside the log.

Without this, an exception in a Qt slot or a worker thread goes to a terminal the person usually does not have,
and a native crash leaves nothing at all.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from app import APP_NAME

log = logging.getLogger(__name__)

NATIVE_CRASH_FILE = "native-crashes.log"

# faulthandler writes to the file's descriptor at crash time, so the file must stay open for the whole run.
_native_crash_file: IO[str] | None = None


def bug_sentence(error: BaseException, log_file: Path) -> str:
    return (
        f"Something went wrong inside {APP_NAME} ({type(error).__name__}: {error}). This is a bug; your "
        f"conversations are kept and the app goes on. Please report it; the details are in {log_file}."
    )


def install_crash_handlers(log_file: Path, report: Callable[[str], None] | None = None) -> Path:
    """Route uncaught exceptions (main thread, Qt slots, other threads) to the log and to ``report`` (a sentence);
    enable faulthandler into a file in the log folder. Returns that file's path."""
    global _native_crash_file

    def report_safely(error: BaseException) -> None:
        if report is None:
            return
        try:
            report(bug_sentence(error, log_file))
        except Exception:  # reporting must never raise from inside an exception hook
            log.exception("the error report could not be shown")

    def on_uncaught(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, traceback)
            return
        log.critical("Uncaught error", exc_info=(kind, error, traceback))
        report_safely(error)

    def on_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread is not None else "?"
        log.critical(
            "Uncaught error in thread %s", name, exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
        )
        report_safely(args.exc_value)

    sys.excepthook = on_uncaught
    threading.excepthook = on_uncaught_in_thread

    native_file = log_file.parent / NATIVE_CRASH_FILE
    if _native_crash_file is not None:
        # Installed again (the window's reporter) on the same file: one header per run.
        if Path(_native_crash_file.name) == native_file:
            return native_file
        _native_crash_file.close()
    _native_crash_file = open(native_file, "a", encoding="utf-8")  # noqa: SIM115  (open for the whole run)
    # A header per run, so a trace below it can be matched with the log of the same run.
    _native_crash_file.write(
        f"--- {APP_NAME} started {time.strftime('%Y-%m-%d %H:%M:%S')}, pid {os.getpid()}\n"
    )
    _native_crash_file.flush()
    faulthandler.enable(file=_native_crash_file, all_threads=True)
    return native_file
