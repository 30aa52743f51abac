"""Moving one file's bytes from the Hub to the disk: resumable, retried, verified.

- Each file is written to ``app_paths().downloads_dir/<owner>__<repo>/<file>.part`` with a sidecar
  ``.part.json`` (url, sha256, size). On the next attempt, in this process or after a restart, the rest is
  asked for with an HTTP ``Range`` request from the partial's size on disk.
- A read that brings no byte for ``stall_seconds`` counts as a stall; stalls and dropped connections are
  retried with exponential backoff, and the count of failures resets whenever bytes arrived.
- Pause and cancel set an event checked between chunks and shut the socket down, so a blocked read returns
  at once (well within 2 s) instead of waiting for a timeout.
- Before a file is installed, ``verify_on_disk`` reads it back from the disk (its size, and its sha256 against
  the Hub's LFS hash): what is checked is what gets renamed into place, whatever wrote to it meanwhile. A
  mismatch deletes the partial and says so.
- A disk that refuses more data (full, a quota, a file size limit) stops the transfer with a sentence that says
  how much is still needed there, reserve included; the partial is kept.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import socket
import threading
import time
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
# How often a running download looks at the queue for a pause or cancel asked by another process.
STOP_REQUEST_POLL_SECONDS = 1.0
# Errors that mean "the disk will not take more": full, over a quota, past a file size limit (ulimit -f, FAT32).
DISK_REFUSED_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class NotEnoughDiskError(UserError):
    """The download does not fit on the disk (found before starting, or when the disk refused more data);
    what was downloaded is kept, and the job is paused so that resuming continues it."""


class ChecksumMismatchError(ModelFileError):
    """The bytes received are not the file the Hub published; the partial was deleted."""


class RemoteChangedError(UserError):
    """The server now serves another file under the job's URL; the partial (of the old one) is useless."""


class DownloadFailedError(UserError):
    """The transfer kept failing; the partial is kept so the next attempt continues from it."""


class TransferControl:
    """Pause or cancel one running download from any thread."""

    def __init__(self, remote_request: Callable[[], str] | None = None) -> None:
        self.stop = threading.Event()
        self.reason = ""  # "pause" | "cancel"
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        # A pause or cancel asked by another process (through the queue file), looked at now and then.
        self._remote_request = remote_request
        self._next_poll = 0.0

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
        if self._remote_request is not None and time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + STOP_REQUEST_POLL_SECONDS
            try:
                asked = self._remote_request()
            except UserError:
                asked = ""  # the queue cannot be read right now: keep going, ask again later
            if asked in ("pause", "cancel"):
                self.request(asked)
        if self.stop.is_set():
            raise Cancelled()


class _Retry(Exception):
    """A failure worth another attempt after a pause: a drop, a stall, a busy server."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Unreachable(_Retry):
    """No connection could be made at all (offline, an address that cannot be looked up, refused)."""

    def __init__(self, error: UserError) -> None:
        super().__init__("the Hub cannot be reached")
        self.error = error


class _PartialFile:
    """A partial download and how many bytes of it are on disk (where the next request starts)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size if path.exists() else 0

    def reset(self) -> None:
        self.path.write_bytes(b"")
        self.size = 0


def _socket_of(response: Any) -> socket.socket | None:
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    return sock if isinstance(sock, socket.socket) else None


def _served_sha256(headers: Any) -> str | None:
    """The sha256 the Hub says it is serving: an LFS file's ETag (``X-Linked-Etag`` behind a redirect) is its
    sha256. None when the ETag is something else (a git blob id, a CDN's own tag)."""
    value = headers.get("X-Linked-Etag") or headers.get("ETag") or ""
    tag = value.removeprefix("W/").strip('"').lower()
    return tag if len(tag) == 64 and all(c in "0123456789abcdef" for c in tag) else None


def _content_range_start(value: str | None) -> int | None:
    """``bytes 1000-4999/5000`` -> 1000."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def check_free_disk(needed: int, directory: Path, what: str) -> None:
    """Refuse before starting when ``needed`` bytes (plus the reserve) are not free where they go."""
    free = shutil.disk_usage(existing_parent(directory)).free
    if needed + DISK_RESERVE_BYTES > free:
        raise NotEnoughDiskError(
            f"{what} needs {human_bytes(needed)} of disk space in {directory}, plus the "
            f"{human_bytes(DISK_RESERVE_BYTES)} LlamaDesk leaves free so the system keeps working "
            f"({human_bytes(needed + DISK_RESERVE_BYTES)} in all), but only {human_bytes(free)} is free. Free up "
            "some space (or choose a smaller quantization) and try again."
        )


def disk_refused_error(
    exc: OSError, job: DownloadJob, partial: Path, done_before_file: int
) -> NotEnoughDiskError:
    """The sentence for a write the disk refused mid-download: what is still needed there, and where."""
    folder = partial.parent
    # What is on disk, not what was counted: the refused write may have stored part of its chunk.
    with contextlib.suppress(OSError):
        done_before_file += partial.stat().st_size
    done = done_before_file
    remaining = max(0, job.total_size - done)
    try:
        free_text = f"{human_bytes(shutil.disk_usage(existing_parent(folder)).free)} is free now"
    except OSError:
        free_text = "how much is free could not be read"
    cause = exc.strerror or str(exc)
    if exc.errno == errno.EFBIG:
        cause += (
            "; the system limits how large a file may grow (ulimit -f), or the drive is FAT32 (4 GB at most)"
        )
    return NotEnoughDiskError(
        f"The disk refused to store more of {job.name} in {folder} ({cause}). It still needs "
        f"{human_bytes(remaining)} there, plus the {human_bytes(DISK_RESERVE_BYTES)} LlamaDesk leaves free so "
        f"the system keeps working, and {free_text}. The {human_bytes(done)} already downloaded are kept: free "
        "up some space, then run `llamadesk models resume` (or press Resume in the window) to continue."
    )


def write_error(exc: OSError, job: DownloadJob, partial: Path, done_before_file: int) -> UserError:
    if exc.errno in DISK_REFUSED_ERRNOS:
        log.info("Download of %s: the disk refused more data (%s)", job.name, exc)
        return disk_refused_error(exc, job, partial, done_before_file)
    log.warning("Download of %s: cannot write %s", job.name, partial, exc_info=exc)
    return UserError(
        f"Could not write the download to {partial} ({exc.strerror or exc}). Check that the folder is "
        "writable and try again; what was downloaded is kept."
    )


def verify_on_disk(
    remote: RemoteFile, partial: Path, control: TransferControl, on_block: Callable[[int], None]
) -> str:
    """Read the partial back from the disk and compare its size and sha256 with the Hub's; on a mismatch
    delete it (and its sidecar) and raise ChecksumMismatchError. Called right before it is renamed into place,
    so bytes written into it by anything after they arrived are caught too. Returns the sha256 read."""
    digest = hashlib.sha256()
    with partial.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == remote.size:
            while block := handle.read(HASH_BLOCK_BYTES):
                control.raise_if_stopped()
                digest.update(block)
                on_block(len(block))
    wrong_size = size != remote.size
    if wrong_size or (remote.sha256 is not None and digest.hexdigest() != remote.sha256.lower()):
        log.warning(
            "%s failed verification: %d bytes on disk (expected %d), sha256 %s (expected %s)",
            partial,
            size,
            remote.size,
            "not computed" if wrong_size else digest.hexdigest(),
            remote.sha256,
        )
        partial.unlink(missing_ok=True)
        sidecar_path(partial).unlink(missing_ok=True)
        found = (
            f"is {size:,} bytes on disk instead of the {remote.size:,} published on the Hugging Face Hub"
            if wrong_size
            else "does not match the checksum published on the Hugging Face Hub (sha256)"
        )
        raise ChecksumMismatchError(
            f"The downloaded file {remote.basename} {found}, so it was deleted and not installed. Download it "
            "again; if this keeps happening, something (a proxy on the network, another program writing into "
            "the download folder) is changing the data."
        )
    if remote.sha256 is None:
        log.warning("%s has no published sha256; only its size was checked", remote.path)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileTransfer:
    """How one file is fetched: where from, and how patiently (stall timeout, retries, backoff)."""

    endpoint: str
    stall_seconds: float = DEFAULT_STALL_SECONDS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_start: float = BACKOFF_START_SECONDS
    backoff_max: float = BACKOFF_MAX_SECONDS
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS

    def url_for(self, job: DownloadJob, remote: RemoteFile) -> str:
        """Where the file's bytes are asked for: the Hub's (a transfer from elsewhere overrides the three hooks)."""
        from huggingface_hub import hf_hub_url

        return hf_hub_url(job.repo_id, remote.path, revision=job.revision, endpoint=job.endpoint)

    def request_headers(self) -> dict[str, str]:
        """The Hub's headers, with the person's token when there is one: only ever sent to the Hub."""
        from huggingface_hub.utils import build_hf_headers

        return dict(build_hf_headers())

    def source_error(self, exc: BaseException, job: DownloadJob, remote: RemoteFile) -> UserError | None:
        """The sentence for a request that failed (None: a bug, not the world)."""
        return hub_error(exc, job.repo_id, self.endpoint, remote.path)

    def fetch(
        self, job: DownloadJob, remote: RemoteFile, control: TransferControl, tracker: ProgressTracker
    ) -> Path:
        """Bring one file's partial to its full size; returns it (``verify_on_disk`` checks it before install)."""
        try:
            return self._fetch(job, remote, control, tracker)
        except OSError as exc:  # the partial or its sidecar could not be written
            raise write_error(exc, job, job.partial_path(remote), tracker.done_before_file) from None

    def _fetch(
        self, job: DownloadJob, remote: RemoteFile, control: TransferControl, tracker: ProgressTracker
    ) -> Path:
        url = self.url_for(job, remote)
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
            log.info("Discarding %s: it is larger than the file on the Hub", partial.path)
            partial.path.unlink()
        if not partial.path.exists():
            partial.path.touch()
        partial.size = partial.path.stat().st_size
        tracker.file_done = partial.size

        failures = 0
        size_at_last_failure = partial.size
        reached = False  # the Hub answered during this fetch: a later failure to connect is worth retrying
        while partial.size < remote.size:
            control.raise_if_stopped()
            try:
                self._transfer(url, job, partial, remote, control, tracker)
                reached = True
                if partial.size < remote.size:
                    raise _Retry("the server closed the connection early")
            except _Retry as retry:
                control.raise_if_stopped()
                if isinstance(retry, _Unreachable) and not reached:
                    # Offline from the start: say so now rather than after minutes of retries (the partial is
                    # kept, so Resume continues from it).
                    raise retry.error from None
                reached = reached or not isinstance(retry, _Unreachable)
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
        return partial.path

    def _transfer(
        self,
        url: str,
        job: DownloadJob,
        partial: _PartialFile,
        remote: RemoteFile,
        control: TransferControl,
        tracker: ProgressTracker,
    ) -> None:
        """One HTTP request for the rest of the file, appended to the partial. Raises _Retry when worth it."""
        import httpx2
        from huggingface_hub import get_session, hf_raise_for_status
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

        headers = self.request_headers()
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
                served = _served_sha256(response.headers)
                if remote.sha256 is not None and served is not None and served != remote.sha256.lower():
                    raise RemoteChangedError(
                        f"{remote.basename} changed on the Hugging Face Hub since this download was planned (it "
                        "is now a different file), so what was downloaded of it was deleted. Start the download "
                        "again to get the current version."
                    )
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
                    # Unbuffered: what the partial's size says is on disk is exactly what was received, even
                    # if the process is killed between two chunks.
                    with partial.path.open("ab", buffering=0) as handle:
                        for chunk in response.iter_raw():
                            control.raise_if_stopped()
                            _write_all(handle, chunk)
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
            error = self.source_error(exc, job, remote)
            raise (_Unreachable(error) if error else _Retry("cannot connect")) from exc
        except httpx2.TransportError as exc:
            control.raise_if_stopped()
            # The library's words ("[Errno 104] Connection reset by peer") go to the log, not to the person.
            log.info("Download of %s: the connection dropped (%s)", remote.path, exc)
            raise _Retry("the connection dropped") from exc
        except (Cancelled, _Retry, RemoteChangedError):
            raise
        except HfHubHTTPError as exc:
            control.raise_if_stopped()
            raise (self.source_error(exc, job, remote) or exc) from exc
        except OfflineModeIsEnabled as exc:
            raise HubUnavailableError(OFFLINE_SENTENCE) from exc
        except OSError as exc:
            raise write_error(exc, job, partial.path, tracker.done_before_file) from None


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
