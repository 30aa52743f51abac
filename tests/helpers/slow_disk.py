"""A model file on a disk that has not answered yet, for the tests of what must not wait for a file's hash."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path


class SlowDisk:
    """A named pipe as a model file on a disk that has not answered yet: reading it waits until ``answer()``
    writes its content (at the latest after ``give_up_s``, so a test that waits for it wrongly fails, not hangs)."""

    def __init__(self, path: Path, content: bytes, give_up_s: float = 60.0) -> None:
        os.mkfifo(path)
        self.path = path
        self.content = content
        self.answered_late = False
        self._once = threading.Lock()
        self._answered = False
        self._timer = threading.Timer(give_up_s, self._answer_late)
        self._timer.daemon = True
        self._timer.start()

    def answer(self) -> None:
        self._timer.cancel()
        self._write()

    def _answer_late(self) -> None:
        self.answered_late = True
        self._write()

    def _write(self) -> None:
        with self._once:
            if self._answered:
                return
            self._answered = True
            deadline = time.monotonic() + 30
            while True:  # until the reader (the hash under way) has the pipe open
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                    break
                except OSError as exc:
                    if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            os.set_blocking(fd, True)
            with os.fdopen(fd, "wb") as pipe:
                pipe.write(self.content)
