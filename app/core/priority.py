"""Background work gives way to the window: a lower CPU priority for the threads and processes doing it.

On a machine of two cores, a reader process parsing a PDF and an index thread embedding passages can take both
cores; the GUI thread then waits for one, and the window stutters although it holds no lock. Background work
lowered here yields its core whenever the GUI thread (or a reply being generated) wants it, and still gets every
cycle nobody else wants, so it takes no longer on an idle machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

# Unix niceness for background work: well below the window (0), above nothing else that matters.
BACKGROUND_NICENESS = 10


def lower_this_thread(niceness: int = BACKGROUND_NICENESS) -> bool:
    """Give the calling thread ``niceness`` (never raising its priority); False where a thread cannot have its
    own: only Linux schedules threads by their own niceness, elsewhere it would lower the whole app. Call it on a
    thread of its own, not a pool's: the priority is not given back."""
    if not sys.platform.startswith("linux"):
        return False
    thread = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, thread) < niceness:
            os.setpriority(os.PRIO_PROCESS, thread, niceness)
    except OSError as error:  # a sandbox that forbids it: the work runs at the app's priority
        log.debug("could not lower the priority of thread %d: %s", thread, error)
        return False
    return True


def lower_this_process(niceness: int = BACKGROUND_NICENESS) -> bool:
    """Give the calling process (a child doing background work) ``niceness``, never raising its priority;
    False where the platform has no niceness (Windows) or refuses."""
    if not hasattr(os, "getpriority"):
        return False
    with contextlib.suppress(OSError):
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if current < niceness:
            os.setpriority(os.PRIO_PROCESS, 0, niceness)
        return True
    return False
