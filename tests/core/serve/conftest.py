"""The API's tests share one fixture: an engine client with the test model loaded, per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.llm.load_options import LoadOptions
from app.core.llm.service import EngineClient, EngineService


@pytest.fixture(scope="module")
def loaded_client(model_path: Path) -> Iterator[EngineClient]:
    """The test model loaded with a 1,024-token context, behind a client named as the API's."""
    service = EngineService()
    client = service.client("api")
    client.load_and_wait(str(model_path), LoadOptions(context_size=1024))
    yield client
    service.shutdown()
