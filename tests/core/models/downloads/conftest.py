"""Every download test talks to the fake hub on 127.0.0.1, serving one small repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.fake_hub import FakeHub
from tests.helpers.downloads import serve_tiny_repo


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    yield from serve_tiny_repo(monkeypatch, tmp_path)
