"""Starting the window: it opens even when llama.cpp's bindings are broken, and says so when a model loads."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

import app.core.llm.bindings as bindings_module
from app.core.paths import app_paths
from app.ui.application import configure_logging, open_main_window
from app.ui.main_window import MainWindow

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.gui


def test_window_opens_when_the_bindings_cannot_be_imported(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, llamadesk_home: Path
) -> None:
    def broken_build() -> None:  # stands in for a llama.cpp wheel whose shared library is missing
        raise OSError("libllama.so: cannot open shared object file")

    monkeypatch.setattr(bindings_module, "import_backend", broken_build)
    configure_logging()
    window = open_main_window(argparse.Namespace(model=None, no_model=True))
    qtbot.addWidget(window)
    assert isinstance(window, MainWindow)
    window.show()
    assert window.isVisible()
    window.close()
    log = (llamadesk_home / "logs" / "llamadesk.log").read_text()
    assert "bindings could not be imported" in log and "libllama.so" in log


# A real `llamadesk --model PATH` process (the same main() as `python -m app`), driven from inside by a timer once
# the model is loaded: "send" sends a message that asks for a long reply; "raise" runs a slot and a thread that
# raise. It prints READY when done, and the banner's text every 200 ms.
WINDOW_DRIVER = """
import sys, threading
from PySide6.QtCore import QTimer
import app.ui.application as application
from app.cli import main

model, action = sys.argv[1], sys.argv[2]
open_window = application.open_main_window

def open_and_drive(args):
    window = open_window(args)

    def broken_slot():
        raise RuntimeError("a bug in a slot")

    def broken_thread():
        raise ValueError("a bug in a thread")

    def report_banner():
        print("BANNER", window.banner.isVisible(), window.banner.label.text(), flush=True)

    def when_loaded():
        if window.bridge.model is None:
            QTimer.singleShot(50, when_loaded)
            return
        if action == "send":
            window.input_bar.input.setPlainText("Write a very long story about a lighthouse keeper and the sea.")
            window.send()
        else:
            QTimer.singleShot(0, broken_slot)
            threading.Thread(target=broken_thread, name="worker").start()
        print("READY", flush=True)

    banner_timer = QTimer(window)
    banner_timer.timeout.connect(report_banner)
    banner_timer.start(200)
    QTimer.singleShot(0, when_loaded)
    return window

application.open_main_window = open_and_drive
sys.exit(main(["--model", model]))
"""


def start_window(tmp_path: Path, model_path: Path, action: str) -> subprocess.Popen[str]:
    script = tmp_path / "drive_window.py"
    script.write_text(WINDOW_DRIVER)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(script), str(model_path), action],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def newest_reply(llamadesk_home: Path) -> tuple[str, str] | None:
    database = llamadesk_home / "data" / "history.sqlite3"
    if not database.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            row = db.execute(
                "SELECT state, content FROM messages WHERE role = 'assistant' ORDER BY id DESC LIMIT 1"
            ).fetchone()
    except sqlite3.OperationalError:  # the schema is still being created
        return None
    return (str(row[0]), str(row[1])) if row else None


@pytest.mark.parametrize("quit_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_quit_signal_mid_reply_closes_the_window_keeping_the_partial_reply(
    tmp_path: Path, model_path: Path, llamadesk_home: Path, quit_signal: signal.Signals
) -> None:
    settings_file = app_paths().settings_file
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(
        json.dumps({"context_size": 2048, "mode_overrides": {"chat": {"max_tokens": 4000}}})
    )
    child = start_window(tmp_path, model_path, "send")
    try:
        deadline = time.monotonic() + 120
        reply = None
        while time.monotonic() < deadline:
            assert child.poll() is None, child.communicate()
            reply = newest_reply(llamadesk_home)
            if reply is not None and reply[0] == "streaming" and len(reply[1]) > 20:
                break
            time.sleep(0.1)
        assert reply is not None and reply[0] == "streaming", reply
        child.send_signal(quit_signal)
        signalled = time.monotonic()
        _out, err = child.communicate(timeout=60)
        exit_seconds = time.monotonic() - signalled
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    final = newest_reply(llamadesk_home)
    assert final is not None
    print(
        f"{quit_signal.name} with {len(reply[1])} characters saved: exit {child.returncode} after "
        f"{exit_seconds:.2f} s; the reply is kept {final[0]!r} with {len(final[1])} characters"
    )
    assert child.returncode == 0, err
    assert "Traceback" not in err
    assert final[0] in ("stopped", "interrupted")
    assert final[1].startswith(reply[1][:20]) and len(final[1]) >= len(reply[1])
    assert exit_seconds < 30


def test_an_uncaught_error_is_logged_shown_in_the_banner_and_the_window_lives_on(
    tmp_path: Path, model_path: Path, llamadesk_home: Path
) -> None:
    child = start_window(tmp_path, model_path, "raise")
    banner = ""
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("BANNER True") and "a bug in" in line:
                banner = line
                break
        time.sleep(0.5)  # the second report arrives too; the window must still be alive after both
        assert child.poll() is None, child.communicate()
        child.send_signal(signal.SIGTERM)
        _out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    log_file = llamadesk_home / "logs" / "llamadesk.log"
    print(banner)
    assert "This is a bug" in banner and str(log_file) in banner
    assert child.returncode == 0, err
    logged = log_file.read_text(encoding="utf-8")
    assert "Traceback" in logged
    assert "RuntimeError: a bug in a slot" in logged and "broken_slot" in logged
    assert "ValueError: a bug in a thread" in logged and "Uncaught error in thread worker" in logged
    native = llamadesk_home / "logs" / "native-crashes.log"
    assert native.exists() and native.read_text().count(f"pid {child.pid}") == 1  # one header per run


def test_a_native_crash_leaves_its_python_stack_in_the_log_folder(
    tmp_path: Path, llamadesk_home: Path
) -> None:
    """faulthandler as the window installs it: a segfault (as an abort inside llama.cpp would) writes the stack."""
    script = (
        "import ctypes\n"
        "from app.core.crash import install_crash_handlers\n"
        "from app.ui.application import configure_logging\n"
        "install_crash_handlers(configure_logging())\n"
        "def inside_llama_cpp():\n"
        "    ctypes.string_at(0)\n"
        "inside_llama_cpp()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    trace = (llamadesk_home / "logs" / "native-crashes.log").read_text()
    print(trace)
    assert "Segmentation fault" in trace and "inside_llama_cpp" in trace
