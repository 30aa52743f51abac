"""The window tests' shared fixture: background jobs a test started end with it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QThreadPool


@pytest.fixture(autouse=True)
def background_jobs_end_with_their_test() -> Iterator[None]:
    """A window's jobs on Qt's shared pool (a hardware probe, a menu) must not run on into the next test, where
    they would take the pool's threads and the cores from it."""
    yield
    QThreadPool.globalInstance().waitForDone(30_000)
