"""Moving one file's bytes from the Hub to the disk: resumable, retried, verified.

- Each file is written to ``app_paths().downloads_dir/<owner>__<repo>/<file>.part`` with a sidecar
  ``.part.json`` (url, sha256, size). On the next attempt, in this process or after a restart, the partial
  is hashed again and the rest is asked for with an HTTP ``Range`` request.
- A read that brings no byte for ``stall_seconds`` counts as a stall; stalls and dropped connections are
  retried with exponential backoff, and the count of failures resets whenever bytes arrived.
- Pause and cancel set an event checked between chunks and shut the socket down, so a blocked read returns
  at once (well within 2 s) instead of waiting for a timeout.
- The sha256 is computed while writing and compared with the Hub's LFS hash; a mismatch deletes the partial
  and says so.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from app.core.errors import Cancelled, ModelFileError, UserError
from app.core.files import read_json, write_json_atomic
from app.core.models.catalog import RemoteFile
from app.core.models.downloads.progress import ProgressTracker
from app.core.models.downloads.queue import DownloadJob
from app.core.models.hardware import existing_parent
from app.core.models.hub import OFFLINE_SENTENCE, HubUnavailableError, hub_error
from app.core.units import human_bytes

log = logging.getLogger(__name__)

DEFAULT_STALL_SECONDS = 30.0
DEFAULT_MAX_ATTEMPTS = 8  # consecutive failures with no byte received in between
BACKOFF_START_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 15.0
# Left free on the disk after a download: a completely full disk breaks the system, not just this app.
DISK_RESERVE_BYTES = 100 * 1000 * 1000
HASH_BLOCK_BYTES = 8 * 1024 * 1024
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class NotEnoughDiskError(UserError):
    """The download would not fit on the disk; nothing was started."""


class ChecksumMismatchError(ModelFileError):
    """The bytes received are not the file the Hub published; the partial was deleted."""


class DownloadFailedError(UserError):
    """The transfer kept failing; the partial is kept so the next attempt continues from it."""


class TransferControl:
    """Pause or cancel one running download from any thread."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reason = ""  # "pause" | "cancel"
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None

    def request(self, reason: str) -> None:
        with self._lock:
            if not self.stop.is_set():
                self.reason = reason
            self.stop.set()
            sock = self._socket
        if sock is not None:
            # A read blocked on a silent server would otherwise wait for the stall timeout. shutdown() wakes it
            # at once; the plain socket method is used so a TLS socket's state is left for its owner to clean.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._socket = sock
        if sock is not None and self.stop.is_set():
            self.request(self.reason)

    def raise_if_stopped(self) -> None:
        if self.stop.is_set():
            raise Cancelled()


class _Retry(Exception):
    """A failure worth another attempt after a pause: a drop, a stall, a busy server."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _PartialFile:
    """A partial download and the sha256 of what it holds so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hasher = hashlib.sha256()
        self.size = 0

    def rehash(self, control: TransferControl, on_block: Callable[[int], None]) -> None:
        """Hash what an earlier attempt left, so the final check covers every byte of the file."""
        self.hasher = hashlib.sha256()
        self.size = 0
        with self.path.open("rb") as handle:
            while block := handle.read(HASH_BLOCK_BYTES):
                control.raise_if_stopped()
                self.hasher.update(block)
                self.size += len(block)
                on_block(len(block))

    def reset(self) -> None:
        self.path.write_bytes(b"")
        self.hasher = hashlib.sha256()
        self.size = 0


def _socket_of(response: Any) -> socket.socket | None:
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    return sock if isinstance(sock, socket.socket) else None


def _content_range_start(value: str | None) -> int | None:
    """``bytes 1000-4999/5000`` -> 1000."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def check_free_disk(needed: int, directory: Path, what: str) -> None:
    """Refuse before starting when ``needed`` bytes (plus a small reserve) are not free where they go."""
    free = shutil.disk_usage(existing_parent(directory)).free
    if needed + DISK_RESERVE_BYTES > free:
        raise NotEnoughDiskError(
            f"{what} needs {human_bytes(needed)} of disk space in {directory}, but only {human_bytes(free)} is "
            "free. Free up some space (or choose a smaller quantization) and try again."
        )


@dataclass(frozen=True)
class FileTransfer:
    """How one file is fetched: where from, and how patiently (stall timeout, retries, backoff)."""

    endpoint: str
    stall_seconds: float = DEFAULT_STALL_SECONDS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_start: float = BACKOFF_START_SECONDS
    backoff_max: float = BACKOFF_MAX_SECONDS
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS

    def fetch(
        self, job: DownloadJob, remote: RemoteFile, control: TransferControl, tracker: ProgressTracker
    ) -> Path:
        """Bring one file's partial to its full size and verify it; returns the verified partial."""
        from huggingface_hub import hf_hub_url

        url = hf_hub_url(job.repo_id, remote.path, revision=job.revision, endpoint=job.endpoint)
        partial = _PartialFile(job.partial_path(remote))
        sidecar = sidecar_path(partial.path)
        expected = {"url": url, "sha256": remote.sha256, "size": remote.size, "repo_id": job.repo_id}
        previous = read_json(sidecar)
        if partial.path.exists() and not (
            isinstance(previous, dict)
            and previous.get("sha256") == remote.sha256
            and previous.get("size") == remote.size
        ):
            log.info("Discarding %s: it belongs to another version of the file", partial.path)
            partial.path.unlink()
        partial.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_json_atomic(sidecar, expected)

        if partial.path.exists() and partial.path.stat().st_size > remote.size:
            partial.path.unlink()
        if partial.path.exists():
            tracker.report("checking")

            def hashed(count: int) -> None:
                tracker.file_done += count
                tracker.report("checking", force=False)

            partial.rehash(control, hashed)
        else:
            partial.path.touch()

        failures = 0
        size_at_last_failure = partial.size
        while partial.size < remote.size:
            control.raise_if_stopped()
            try:
                self._transfer(url, job.repo_id, partial, remote, control, tracker)
                if partial.size < remote.size:
                    raise _Retry("the server closed the connection early")
            except _Retry as retry:
                control.raise_if_stopped()
                failures = 1 if partial.size > size_at_last_failure else failures + 1
                size_at_last_failure = partial.size
                if failures > self.max_attempts:
                    raise DownloadFailedError(
                        f"The download of {job.name} stopped after {self.max_attempts} attempts in a row failed "
                        f"({retry.reason}). The {human_bytes(tracker.done)} already downloaded are kept: try "
                        "again later and it continues from there."
                    ) from None
                delay = min(self.backoff_max, self.backoff_start * 2 ** (failures - 1))
                log.info("Download of %s: %s; retrying in %.1f s", remote.path, retry.reason, delay)
                tracker.restart_speed()
                tracker.report("waiting", f"Connection problem ({retry.reason}); retrying in {delay:.0f} s")
                if control.stop.wait(delay):
                    raise Cancelled() from None
        tracker.report("verifying")
        digest = partial.hasher.hexdigest()
        if partial.size != remote.size or (remote.sha256 is not None and digest != remote.sha256.lower()):
            partial.path.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"The downloaded file {remote.basename} does not match the checksum published on the Hugging "
                "Face Hub (sha256), so it was deleted and not installed. Download it again; if this keeps "
                "happening, something on the network (a proxy, say) is changing the data."
            )
        if remote.sha256 is None:
            log.warning("%s has no published sha256; only its size was checked", remote.path)
        return partial.path

    def _transfer(
        self,
        url: str,
        repo_id: str,
        partial: _PartialFile,
        remote: RemoteFile,
        control: TransferControl,
        tracker: ProgressTracker,
    ) -> None:
        """One HTTP request for the rest of the file, appended to the partial. Raises _Retry when worth it."""
        import httpx2
        from huggingface_hub import get_session, hf_raise_for_status
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
        from huggingface_hub.utils._headers import build_hf_headers

        headers = build_hf_headers()
        headers["Accept-Encoding"] = (
            "identity"  # sizes and hashes are of the file, not of a compressed stream
        )
        start = partial.size
        if start:
            headers["Range"] = f"bytes={start}-"
        timeout = httpx2.Timeout(self.stall_seconds, connect=self.connect_timeout)
        try:
            with get_session().stream(
                "GET", url, headers=headers, timeout=timeout, follow_redirects=True
            ) as response:
                status = response.status_code
                if status == 416 and start >= remote.size:
                    return  # everything is here already
                if status in RETRYABLE_STATUS:
                    raise _Retry(f"the server answered {status}")
                if status >= 400:
                    response.read()
                    hf_raise_for_status(response)
                if start and status == 200:
                    log.info(
                        "The server ignored the Range request for %s; starting the file over", remote.path
                    )
                    tracker.file_done -= partial.size
                    partial.reset()
                elif status == 206 and _content_range_start(response.headers.get("Content-Range")) != start:
                    raise _Retry("the server sent the wrong part of the file")
                control.attach(_socket_of(response))
                try:
                    # Unbuffered: what the partial's size says is on disk is exactly what was hashed, even if
                    # the process is killed between two chunks.
                    with partial.path.open("ab", buffering=0) as handle:
                        for chunk in response.iter_raw():
                            control.raise_if_stopped()
                            _write_all(handle, chunk)
                            partial.hasher.update(chunk)
                            partial.size += len(chunk)
                            tracker.received(len(chunk))
                            if partial.size > remote.size:
                                break  # more than the file: the checksum will say what it is
                finally:
                    control.attach(None)
        except httpx2.TimeoutException as exc:
            control.raise_if_stopped()
            if isinstance(exc, httpx2.ConnectTimeout):
                raise _Retry("the server did not answer") from exc
            raise _Retry(f"no data for {self.stall_seconds:.0f} s") from exc
        except httpx2.ConnectError as exc:
            control.raise_if_stopped()
            raise _Retry(f"cannot connect: {exc}") from exc
        except httpx2.TransportError as exc:
            control.raise_if_stopped()
            raise _Retry(f"connection dropped: {exc}" if str(exc) else "connection dropped") from exc
        except (Cancelled, _Retry):
            raise
        except HfHubHTTPError as exc:
            control.raise_if_stopped()
            raise (hub_error(exc, repo_id, self.endpoint, remote.path) or exc) from exc
        except OfflineModeIsEnabled as exc:
            raise HubUnavailableError(OFFLINE_SENTENCE) from exc
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise NotEnoughDiskError(
                    f"The disk holding {partial.path.parent} is full. Free up some space and try again; what "
                    "was downloaded is kept."
                ) from exc
            raise UserError(
                f"Could not write the download to {partial.path} ({exc.strerror or exc}). Check that the folder "
                "is writable and try again."
            ) from exc


def _write_all(handle: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = handle.write(view)
        if not written:
            raise OSError(errno.EIO, "the disk accepted no data")
        view = view[written:]


def sidecar_path(partial: Path) -> Path:
    """Beside a partial: the url, sha256 and size it is a part of, so a later attempt knows whether to keep it."""
    return partial.with_name(partial.name + ".json")
