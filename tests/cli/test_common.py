"""The pieces the model-using commands share: the one Ctrl+C handler, and finding the model to load."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.cli.common import resolve_model, stop_on_interrupt
from tests.helpers.cli import llamadesk_command


def test_ctrl_c_inside_the_block_stops_the_work_and_the_handler_is_put_back() -> None:
    before = signal.getsignal(signal.SIGINT)
    stops: list[str] = []
    with stop_on_interrupt(lambda: stops.append("stop")):
        os.kill(os.getpid(), signal.SIGINT)
    assert stops == ["stop"]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_model_path_is_taken_as_given(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model.gguf"
    # A missing file is still the answer: loading it says what is wrong, in a sentence.
    assert resolve_model(argparse.Namespace(model=str(missing))) == missing


def test_ctrl_c_while_the_model_loads_cancels_the_load_and_generates_nothing(model_path: Path) -> None:
    """SIGINT sent as soon as llama.cpp has mapped the model file (inside its constructor, on the engine
    thread): the load is cancelled, nothing is generated, exit 130, no traceback. Four runs, at slightly
    different moments of the load."""
    for delay in (0.0, 0.02, 0.05, 0.08):
        child = subprocess.Popen(
            llamadesk_command(
                "chat",
                "--model",
                str(model_path),
                "--no-save",
                "--max-tokens",
                "200",
                "-p",
                "Write a long story about a lighthouse.",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        mapped_at = wait_until_mapped(child, model_path)
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        interrupted_at = time.monotonic()
        out, err = child.communicate(timeout=60)
        exit_seconds = time.monotonic() - interrupted_at
        print(
            f"SIGINT {delay:.2f} s after the model was mapped ({mapped_at:.2f} s after start): exit "
            f"{child.returncode} {exit_seconds:.2f} s later, stdout {out!r}"
        )
        # At once, the load is under way: it is cancelled (130). Later, on a fast machine, the load may just have
        # finished: then the Ctrl+C stops the reply before its first word (exit 0, as a stopped reply does).
        assert child.returncode == 130 if delay == 0.0 else child.returncode in (130, 0), err
        assert out.strip() == ""
        assert "Traceback" not in err
        assert exit_seconds < 10


def test_ctrl_c_caught_inside_code_compiled_from_a_string_ends_with_the_commands_exit_code() -> None:
    """Under ``python -m`` CPython takes a KeyboardInterrupt raised in code compiled from a string for an unhandled
    one even after it is caught, and kills the process by SIGINT at exit (the chat above then exited -2 when
    Ctrl+C met a lazy import). The terminal's handler raises a subclass the interpreter does not mistake."""
    root = Path(__file__).resolve().parents[2]
    probe = [sys.executable, "-m", "tests.helpers.interrupt_in_generated_code"]
    plain = subprocess.run(probe, cwd=root, capture_output=True, text=True, timeout=60)
    handled = subprocess.run([*probe, "handled"], cwd=root, capture_output=True, text=True, timeout=60)
    print(f"Python's own handler: exit {plain.returncode}; the terminal's: exit {handled.returncode}")
    assert handled.returncode == 0, handled.stderr


def wait_until_mapped(child: subprocess.Popen[str], model_path: Path) -> float:
    """Seconds until llama.cpp maps ``model_path`` into ``child`` (its load has begun); read from /proc."""
    started = time.monotonic()
    while time.monotonic() - started < 60:
        assert child.poll() is None, child.communicate()
        with contextlib.suppress(OSError):
            if str(model_path) in Path(f"/proc/{child.pid}/maps").read_text():
                return time.monotonic() - started
        time.sleep(0.002)
    raise AssertionError("the model was never mapped")
