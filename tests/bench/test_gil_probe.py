"""The interpreter-lock probe of the window benchmarks: a thread that holds the lock long is named, with its
line; threads that only wait are not."""

from __future__ import annotations

import threading
import time

from app.bench.gil_probe import GilProbe


def _hold_the_lock(seconds: float) -> None:
    """A call into C that keeps the lock: ``sum`` over a range checks for no other thread until it is done."""
    ended = time.perf_counter() + seconds
    while time.perf_counter() < ended:
        sum(range(3_000_000))  # about 50 ms each, the lock kept throughout


def test_a_thread_holding_the_lock_is_named_with_its_line() -> None:
    probe = GilProbe(threshold_seconds=0.02)
    idle = threading.Event()
    waiter = threading.Thread(target=idle.wait, name="waiting", daemon=True)
    waiter.start()
    probe.start()
    holder = threading.Thread(target=_hold_the_lock, args=(0.5,), name="holder")
    holder.start()
    holder.join(30)
    probe.stop()
    idle.set()
    assert probe.late, "the probe saw no late wake-up while another thread held the lock"
    _worst_key, count, worst = probe.holders()[0]
    assert worst >= 0.02 and count >= 1
    named = [key for key, _count, _worst in probe.holders()]
    assert any(key.startswith("holder: ") and "_hold_the_lock" in key for key in named)
    assert not any(key.startswith("waiting: ") for key in named)  # idle in the standard library's wait
    assert "holder" in probe.report()
