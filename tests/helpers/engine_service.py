"""An engine service over the session's shared, loaded engine, whose thread ends with the test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

from app.core.llm.engine import Engine
from app.core.llm.service import EngineService


class LentEngine:
    """The shared engine as one service sees it: everything passes through but ``unload``. A service unloads
    its engine when it shuts down, and this one must stay loaded for the tests after it."""

    def __init__(self, engine: Engine) -> None:
        object.__setattr__(self, "_engine", engine)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._engine, name, value)

    def unload(self) -> None:
        """Kept loaded: the engine belongs to the test session, not to the service."""


@contextlib.contextmanager
def service_over(engine: Engine) -> Iterator[EngineService]:
    """A service whose thread runs requests on ``engine``; at the end of the block the thread is stopped (what
    is queued or running is cancelled) and ``engine`` is left loaded."""
    service = EngineService(cast(Engine, LentEngine(engine)))
    try:
        yield service
    finally:
        assert service.shutdown(timeout_s=30), "the engine service's thread did not stop within 30 s"
