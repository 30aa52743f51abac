"""Background work gives way to the window: a lowered thread or process, and the rest of the app untouched."""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from multiprocessing.connection import Connection

import pytest

from app.core.priority import BACKGROUND_NICENESS, lower_this_process, lower_this_thread

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="threads have their own niceness on Linux"
)


@linux_only
def test_a_lowered_thread_alone_is_lowered() -> None:
    app_niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[tuple[bool, int]] = []

    def background() -> None:
        lowered = lower_this_thread()
        seen.append((lowered, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))

    worker = threading.Thread(target=background)
    worker.start()
    worker.join(10)
    assert seen == [(True, max(app_niceness, BACKGROUND_NICENESS))]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == app_niceness  # the app's own thread


def _report_niceness(sender: Connection) -> None:
    lowered = lower_this_process()
    sender.send((lowered, os.getpriority(os.PRIO_PROCESS, 0)))
    sender.close()


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no niceness on this platform")
def test_a_lowered_child_process_is_lowered_and_the_app_is_not() -> None:
    app_niceness = os.getpriority(os.PRIO_PROCESS, 0)
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_report_niceness, args=(sender,))
    child.start()
    sender.close()
    assert receiver.poll(60)
    assert receiver.recv() == (True, max(app_niceness, BACKGROUND_NICENESS))
    child.join(10)
    assert os.getpriority(os.PRIO_PROCESS, 0) == app_niceness


@linux_only
def test_a_thread_already_lower_is_not_raised() -> None:
    seen: list[int] = []

    def background() -> None:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, BACKGROUND_NICENESS + 5)
        lower_this_thread()
        seen.append(os.getpriority(os.PRIO_PROCESS, thread))

    worker = threading.Thread(target=background)
    worker.start()
    worker.join(10)
    assert seen == [BACKGROUND_NICENESS + 5]
