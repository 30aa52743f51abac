"""The history tests' store: a fresh one in the test's own LLAMADESK_HOME."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.core.history.store import HistoryStore


@pytest.fixture
def store() -> Iterator[HistoryStore]:
    opened = HistoryStore()
    yield opened
    opened.close()
