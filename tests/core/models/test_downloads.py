"""Downloads against a real HTTP server on 127.0.0.1 (the fake hub): every fault the issue names."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.core.errors import Cancelled, UserError
from app.core.models.catalog import HubAccessError, HubUnavailableError
from app.core.models.downloads import (
    STATE_DONE,
    STATE_PAUSED,
    STATE_QUEUED,
    ChecksumMismatchError,
    Downloader,
    DownloadJob,
    DownloadProgress,
    DownloadQueue,
    NotEnoughDiskError,
    find_installed,
    installed_models,
    remove_installed,
)
from app.core.models.inventory import known_models
from app.core.paths import app_paths
from tests.fixtures.fake_hub import FakeHub, use_fake_hub_only

REPO = "testorg/Tiny-Instruct-GGUF"
FILE = "Tiny-Instruct-Q4_K_M.gguf"
SIZE = 4 * 1024 * 1024
DATA = random.Random(5).randbytes(SIZE)
SMALL = random.Random(6).randbytes(256 * 1024)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """The fake hub with one small repository."""
    use_fake_hub_only(monkeypatch, tmp_path)
    with FakeHub() as fake:
        fake.add_repo(REPO, {FILE: DATA, "Tiny-Instruct-Q8_0.gguf": SMALL, "README.md": b"# Tiny\n"})
        yield fake


def make_downloader(hub: FakeHub, **options: float) -> Downloader:
    settings = {"backoff_start": 0.05, "stall_seconds": 10.0, **options}
    return Downloader(
        DownloadQueue(),
        endpoint=hub.url,
        stall_seconds=settings["stall_seconds"],
        backoff_start=settings["backoff_start"],
    )


def downloaded() -> list[Path]:
    return [m.path for m in known_models() if m.source == "downloaded"]


def partial_of(job: DownloadJob) -> Path:
    return job.partial_path(job.files[0])


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


class Background:
    """A download running on its own thread, as the window runs it."""

    def __init__(self, downloader: Downloader, job_id: str) -> None:
        self.error: BaseException | None = None
        self.result: object = None
        self.thread = threading.Thread(target=self._run, args=(downloader, job_id), daemon=True)
        self.thread.start()

    def _run(self, downloader: Downloader, job_id: str) -> None:
        try:
            self.result = downloader.download(job_id)
        except BaseException as exc:
            self.error = exc


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
    print(f"\nloopback download: {SIZE / seconds / 1e6:.0f} MB/s including plan and sha256")


def test_dropped_connection_resumes_with_range(hub: FakeHub) -> None:
    drop_at = int(SIZE * 0.4)
    hub.faults.drop_at_byte = drop_at
    downloader = make_downloader(hub)
    result = downloader.download(downloader.plan(REPO, "Q4_K_M"))

    assert result.path.read_bytes() == DATA
    ranges = [r.range_header for r in hub.range_requests()]
    assert ranges == [f"bytes={drop_at}-"]
    # At most 5% of the file sent twice.
    assert hub.body_bytes_sent() <= SIZE * 1.05


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


def test_a_flipped_byte_is_refused_and_the_partial_deleted(hub: FakeHub) -> None:
    hub.faults.corrupt_byte_at = SIZE // 2
    downloader = make_downloader(hub)
    job = downloader.plan(REPO, "Q4_K_M")
    with pytest.raises(ChecksumMismatchError) as caught:
        downloader.download(job)

    assert "checksum" in str(caught.value) and "deleted" in str(caught.value)
    assert not partial_of(job).exists()
    assert not job.final_path(job.files[0]).exists()
    assert downloaded() == []


def test_cancel_during_a_stall_returns_within_two_seconds(hub: FakeHub) -> None:
    hub.faults.stall_at_byte = SIZE // 2
    downloader = make_downloader(hub, stall_seconds=30.0)
    job = downloader.enqueue(downloader.plan(REPO, "Q4_K_M"))
    running = Background(downloader, job.job_id)
    wait_for(lambda: partial_of(job).exists() and partial_of(job).stat().st_size == SIZE // 2)
    time.sleep(0.3)  # the reader is now blocked on a silent socket

    started = time.perf_counter()
    downloader.cancel(job.job_id)
    running.thread.join(5)
    latency = time.perf_counter() - started

    assert isinstance(running.error, Cancelled)
    assert latency < 2.0
    assert not partial_of(job).exists()
    assert DownloadQueue().jobs() == []
    print(f"\ncancel latency during a stall: {latency * 1000:.0f} ms")


def test_a_stall_is_detected_and_retried(hub: FakeHub) -> None:
    hub.faults.stall_at_byte = SIZE // 3
    downloader = make_downloader(hub, stall_seconds=1.0)
    progress: list[DownloadProgress] = []
    started = time.perf_counter()
    result = downloader.download(downloader.plan(REPO, "Q4_K_M"), progress.append)

    assert result.path.read_bytes() == DATA
    assert time.perf_counter() - started >= 1.0
    assert hub.range_requests()[-1].range_header == f"bytes={SIZE // 3}-"
    waiting = [p.message for p in progress if p.phase == "waiting"]
    assert waiting and "no data for 1 s" in waiting[0]


def test_busy_server_is_retried_with_backoff(hub: FakeHub) -> None:
    hub.faults.fail_status = 503
    hub.faults.fail_count = 2
    downloader = make_downloader(hub)
    result = downloader.download(downloader.plan(REPO, "Q8_0"))
    assert result.path.read_bytes() == SMALL
    assert [r.status for r in hub.file_gets()] == [503, 503, 200]


def test_not_enough_disk_is_refused_before_starting(hub: FakeHub) -> None:
    hub.add_repo(
        "testorg/Huge-GGUF", {"Huge-Q4_K_M.gguf": SMALL}, advertised_sizes={"Huge-Q4_K_M.gguf": 10**15}
    )
    downloader = make_downloader(hub)
    job = downloader.plan("testorg/Huge-GGUF", "Q4_K_M")
    assert job.total_size == 10**15
    with pytest.raises(NotEnoughDiskError) as caught:
        downloader.download(job)
    message = str(caught.value)
    assert "needs 1000.0 TB of disk space" in message and "is free" in message
    assert hub.file_gets() == []  # refused before a single byte was asked for


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


def test_an_interrupted_job_reads_as_queued_after_a_restart(hub: FakeHub) -> None:
    downloader = make_downloader(hub)
    job = downloader.enqueue(downloader.plan(REPO, "Q4_K_M"))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    DownloadQueue().update(job.job_id, state="downloading", owner=f"{dead.stdout.strip()}:12345.000")
    (restored,) = DownloadQueue().jobs()
    assert restored.state == STATE_QUEUED
    # Asking for the same model again finds the unfinished job instead of starting a second one.
    again = downloader.enqueue(downloader.plan(REPO, "Q4_K_M"))
    assert again.job_id == job.job_id and len(DownloadQueue().jobs()) == 1
    finished: list[str] = []
    downloader.run_queue(
        on_finished=lambda j, result, message: finished.append(j.job_id if result else message)
    )
    assert finished == [job.job_id]


@pytest.mark.slow
def test_real_model_downloads_loads_and_answers(hub: FakeHub, model_path: Path) -> None:
    from app.core.llm.engine import Engine, LoadOptions
    from app.core.modes import SamplingOptions

    hub.add_repo("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", {model_path.name: model_path})
    downloader = make_downloader(hub)
    started = time.perf_counter()
    result = downloader.download(downloader.plan("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "Q4_1"))
    seconds = time.perf_counter() - started
    assert result.path.stat().st_size == model_path.stat().st_size
    print(f"\n{result.bytes_transferred / 1e6:.0f} MB over loopback, verified, in {seconds:.2f} s")

    engine = Engine()
    engine.load(result.path, LoadOptions(context_size=512))
    try:
        reply = engine.chat(
            [{"role": "user", "content": "What is the capital of France?"}],
            SamplingOptions(temperature=0.0, max_tokens=24),
        ).collect()
    finally:
        engine.unload()
    assert "Paris" in reply


def test_cli_search_installed_queue_and_remove(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub import constants

    from app.cli import main

    # What HF_ENDPOINT does when set before huggingface_hub is imported.
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    assert main(["models", "search", "tiny"]) == 0
    assert REPO in capsys.readouterr().out

    assert main(["models", "download", f"{REPO}:Q8_0"]) == 0
    captured = capsys.readouterr()
    assert Path(captured.out.strip()).read_bytes() == SMALL
    assert "Verified (sha256) and installed" in captured.err

    assert main(["models", "installed"]) == 0
    assert f"{REPO}:Q8_0" in capsys.readouterr().out
    assert main(["models", "queue"]) == 0
    assert "done" in capsys.readouterr().out
    assert main(["models", "remove", f"{REPO}:Q8_0"]) == 1  # stdin is not a terminal: needs --yes
    assert "--yes" in capsys.readouterr().err
    assert main(["models", "remove", f"{REPO}:Q8_0", "--yes"]) == 0
    assert "262.1 KB freed" in capsys.readouterr().out
    assert downloaded() == []


def test_gguf_files_in_the_hugging_face_cache_are_listed_but_not_deleted_here(tmp_path: Path) -> None:
    # The cache's own layout: blobs by hash, a snapshot per commit linking to them, a ref to the commit.
    repo = tmp_path / "hf-cache" / "models--someone--Cached-GGUF"
    commit = "a" * 40
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in (("Cached-Q5_K_M.gguf", SMALL), ("mmproj-f16.gguf", b"vision")):
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(blob)

    cached = [
        m for m in installed_models(hf_cache_dir=tmp_path / "hf-cache") if m.source == "huggingface cache"
    ]
    assert [(m.id, m.size) for m in cached] == [("someone/Cached-GGUF:Q5_K_M", len(SMALL))]
    with pytest.raises(UserError, match="Hugging Face cache"):
        remove_installed(cached[0])
    assert (snapshot / "Cached-Q5_K_M.gguf").exists()
