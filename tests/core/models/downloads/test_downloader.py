"""The downloader against the fake hub: planning from the file list, pause and resume across processes,
installing (split models too), and the sentences for gated, missing and unreachable repositories."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core.errors import Cancelled
from app.core.llm.saved_state_store import DIGESTS_FILE
from app.core.models.downloads.downloader import Downloader
from app.core.models.downloads.progress import DownloadProgress
from app.core.models.downloads.queue import STATE_DONE, STATE_PAUSED, DownloadQueue
from app.core.models.hub import HubAccessError, HubUnavailableError
from app.core.models.inventory import find_installed, installed_models, remove_installed
from app.core.paths import app_paths
from tests.fixtures.fake_hub import FakeHub
from tests.helpers.downloads import (
    DATA,
    FILE,
    REPO,
    SIZE,
    SMALL,
    Background,
    downloaded,
    make_downloader,
    partial_of,
    wait_for,
)


def test_full_download_is_verified_installed_and_listed(hub: FakeHub) -> None:
    downloader = make_downloader(hub)
    job = downloader.plan(REPO, "Q4_K_M")
    assert [f.path for f in job.files] == [FILE]
    assert job.files[0].sha256 == hashlib.sha256(DATA).hexdigest()
    seen: list[DownloadProgress] = []
    started = time.perf_counter()
    result = downloader.download(job, seen.append)
    seconds = time.perf_counter() - started

    assert result.path == app_paths().models_dir / "testorg__Tiny-Instruct-GGUF" / FILE
    assert result.path.read_bytes() == DATA
    assert result.bytes_transferred == SIZE and result.resumed_from == 0
    assert downloaded() == [result.path]
    assert not list(app_paths().models_dir.rglob("*.part"))
    assert seen[-1].phase == "done" and seen[-1].done_bytes == SIZE
    assert any(p.phase == "verifying" for p in seen)
    (stored,) = DownloadQueue().jobs()
    assert stored.state == STATE_DONE and stored.installed_path == str(result.path)
    installed = find_installed(f"{REPO}:Q4_K_M")
    assert installed is not None and installed.source == "downloaded" and installed.size == SIZE
    # The verified sha256 is kept for the model's saved states: the file is never hashed again.
    kept = json.loads((app_paths().saved_states_dir / DIGESTS_FILE).read_text())
    assert list(kept.values()) == [hashlib.sha256(DATA).hexdigest()]
    assert next(iter(kept)).startswith(f"{result.path.resolve()}|{SIZE}|")
    print(f"\nloopback download: {SIZE / seconds / 1e6:.0f} MB/s including plan and sha256")


def test_paused_download_resumes_after_a_restart(hub: FakeHub) -> None:
    hub.faults.throttle_bytes_per_second = 4 * 1024 * 1024
    first = make_downloader(hub)
    job = first.enqueue(first.plan(REPO, "Q4_K_M"))
    running = Background(first, job.job_id)
    wait_for(lambda: partial_of(job).exists() and partial_of(job).stat().st_size > SIZE // 4)
    first.pause(job.job_id)
    running.thread.join(5)
    assert isinstance(running.error, Cancelled)
    kept = partial_of(job).stat().st_size
    assert 0 < kept < SIZE

    # A new process: nothing shared with the first but the files on disk.
    hub.faults.throttle_bytes_per_second = None
    queue = DownloadQueue()
    (persisted,) = queue.jobs()
    assert persisted.job_id == job.job_id and persisted.state == STATE_PAUSED
    second = Downloader(queue, endpoint=hub.url)
    second.resume(job.job_id)
    assert queue.next_queued() is not None
    result = second.download(job.job_id)

    assert result.path.read_bytes() == DATA
    assert result.resumed_from == kept
    assert result.bytes_transferred == SIZE - kept < SIZE
    assert hub.range_requests()[-1].range_header == f"bytes={kept}-"


def test_a_killed_process_resumes_when_run_again(hub: FakeHub, llamadesk_home: Path) -> None:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "LLAMADESK_HOME": str(llamadesk_home)}
    env.pop("HF_TOKEN", None)
    command = [sys.executable, "-m", "app", "models", "download", f"{REPO}:Q4_K_M"]
    hub.faults.throttle_bytes_per_second = 2 * 1024 * 1024
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = app_paths().downloads_dir / "testorg__Tiny-Instruct-GGUF" / (FILE + ".part")
    try:
        wait_for(lambda: partial.exists() and partial.stat().st_size > SIZE // 5, timeout=60)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    kept = partial.stat().st_size
    requests_before = len(hub.file_gets())

    hub.faults.throttle_bytes_per_second = None
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "Resuming" in again.stderr
    installed = Path(again.stdout.strip())
    assert installed.read_bytes() == DATA
    second_run = sum(r.body_bytes for r in hub.file_gets()[requests_before:])
    assert second_run == SIZE - kept < SIZE
    assert hub.range_requests()[-1].range_header.startswith("bytes=")
    assert int(hub.range_requests()[-1].range_header[6:-1]) >= kept - 1024 * 1024


def test_split_model_is_one_option_downloaded_together(hub: FakeHub) -> None:
    parts = {
        f"Q4_K_M/Big-Q4_K_M-{i:05d}-of-00003.gguf": random.Random(i).randbytes(300_000) for i in (1, 2, 3)
    }
    hub.add_repo("testorg/Big-GGUF", {**parts, "Big-Q2_K.gguf": SMALL, "mmproj-Big-f16.gguf": SMALL})
    downloader = make_downloader(hub)
    job = downloader.plan("testorg/Big-GGUF", "Q4_K_M")
    assert [f.path for f in job.files] == list(parts)
    result = downloader.download(job)

    folder = app_paths().models_dir / "testorg__Big-GGUF"
    assert result.path == folder / "Big-Q4_K_M-00001-of-00003.gguf"
    for path, data in parts.items():
        assert (folder / Path(path).name).read_bytes() == data
    # The library lists the model once, by its first part.
    assert downloaded() == [result.path]
    (model, *_starter) = installed_models()
    assert model.id == "testorg/Big-GGUF:Q4_K_M" and len(model.parts) == 3 and model.size == 900_000
    assert remove_installed(model) == 900_000
    assert not folder.exists()


def test_gated_repository_asks_for_a_token(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("metaish/Gated-GGUF", {"Gated-Q4_K_M.gguf": SMALL}, gated=True)
    downloader = make_downloader(hub)
    with pytest.raises(HubAccessError) as caught:
        downloader.plan("metaish/Gated-GGUF", "Q4_K_M")
    assert "gated" in str(caught.value) and "HF_TOKEN" in str(caught.value)
    assert "hf auth login" in str(caught.value)
    assert [r.status for r in hub.requests if "/resolve/" in r.path] == [401]

    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
    with pytest.raises(HubAccessError) as with_token:
        downloader.plan("metaish/Gated-GGUF", "Q4_K_M")
    assert "token does not have access" in str(with_token.value)
    assert hub.requests[-1].authorized and hub.requests[-1].status == 403


def test_missing_repository_and_file_say_so(hub: FakeHub) -> None:
    downloader = make_downloader(hub)
    with pytest.raises(HubAccessError, match="No model repository named nobody/nothing"):
        downloader.plan("nobody/nothing", "Q4_K_M")
    with pytest.raises(HubAccessError, match=r"has no Q5_K_M file\. It offers: Q8_0, Q4_K_M"):
        downloader.plan(REPO, "Q5_K_M")


def test_offline_mode_and_no_network_are_sentences(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    downloader = make_downloader(hub)
    job = downloader.plan(REPO, "Q8_0")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE is set"):
        downloader.plan(REPO, "Q4_K_M")
    with pytest.raises(HubUnavailableError, match="still work"):
        downloader.download(job)
    assert DownloadQueue().get(job.job_id) is not None  # kept, to try again later
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    closed_port = hub.url  # a server that has gone away: connection refused
    hub.stop()
    gone = Downloader(DownloadQueue(), endpoint=closed_port)
    with pytest.raises(HubUnavailableError, match="cannot be reached") as caught:
        gone.plan(REPO, "Q4_K_M")
    assert "models already on this computer still work" in str(caught.value)


@pytest.mark.slow
def test_real_model_downloads_loads_and_answers(hub: FakeHub, model_path: Path) -> None:
    from app.core.llm.engine import Engine
    from app.core.llm.load_options import LoadOptions
    from app.core.modes import SamplingOptions

    hub.add_repo("llamadesk-tests/test-model-GGUF", {model_path.name: model_path})
    downloader = make_downloader(hub)
    started = time.perf_counter()
    result = downloader.download(downloader.plan("llamadesk-tests/test-model-GGUF", filename=model_path.name))
    seconds = time.perf_counter() - started
    assert result.path.stat().st_size == model_path.stat().st_size
    print(f"\n{result.bytes_transferred / 1e6:.0f} MB over loopback, verified, in {seconds:.2f} s")

    engine = Engine()
    engine.load(result.path, LoadOptions(context_size=512))
    try:
        reply = engine.chat(
            [{"role": "user", "content": "What is the capital of France?"}],
            SamplingOptions(temperature=0.0, max_tokens=24),
        )
        text = reply.collect()
    finally:
        engine.unload()
    assert text and reply.stats.finish_reason in ("stop", "length")
