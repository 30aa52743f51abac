"""Every test of ``test_serve_clients`` on Gemma 3 270M: another architecture, a 262k-token vocabulary and a
built-in chat template. Tool calls and structured replies must validate on both test models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_serve import Server
from tests.cli.test_serve_clients import *  # noqa: F403  (the same tests, collected here for Gemma)
from tests.cli.test_serve_clients import serving


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving(gemma_path, tmp_path_factory.mktemp("clients-home"))
