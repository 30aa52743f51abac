"""Downloading while offline: the Hub is an address that refuses connections (the fake hub, stopped). A download
that cannot connect at all says so at once, in words, and keeps what it has; a connection that drops mid-way
is still retried, and no library text ("[Errno 104] ...") reaches the progress a person reads."""

from __future__ import annotations

import time

import pytest

from app.core.errors import UserError
from app.core.models.downloads.downloader import Downloader
from app.core.models.downloads.progress import DownloadProgress
from app.core.models.downloads.queue import STATE_FAILED, DownloadQueue
from app.core.models.hub import HubUnavailableError
from tests.fixtures.fake_hub import FakeHub
from tests.helpers.downloads import DATA, REPO, SIZE, downloaded, make_downloader, partial_of


def test_a_download_started_offline_fails_at_once_with_the_sentence_and_keeps_its_partial(
    hub: FakeHub,
) -> None:
    hub.faults.drop_at_byte = SIZE // 4  # a first attempt that leaves a partial behind
    hub.faults.drops = 100
    online = make_downloader(hub)
    job = online.enqueue(online.plan(REPO, "Q4_K_M"))
    with pytest.raises(UserError, match="attempts in a row failed"):
        online.download(job.job_id)
    kept = partial_of(job).stat().st_size
    assert kept >= SIZE // 4
    hub.stop()  # offline: every connection is now refused

    # The default retry schedule (8 attempts, backing off from 1 s to 60 s) would take minutes.
    offline = Downloader(DownloadQueue(), endpoint=job.endpoint)
    seen: list[DownloadProgress] = []
    started = time.monotonic()
    try:
        offline.download(job.job_id, seen.append)
    except HubUnavailableError as exc:
        sentence = str(exc)
    else:
        raise AssertionError("the download did not fail")
    seconds = time.monotonic() - started
    print(f"\noffline download failed after {seconds:.2f} s: {sentence}")
    assert seconds < 5
    assert "cannot be reached (the connection was refused)" in sentence
    assert "Errno" not in sentence and "[" not in sentence
    assert not any("Errno" in p.message for p in seen)
    failed = DownloadQueue().get(job.job_id)
    assert failed is not None and failed.state == STATE_FAILED and failed.message == sentence
    assert partial_of(job).stat().st_size == kept  # Resume continues from here once online
    assert downloaded() == []


def test_a_connection_that_drops_midway_is_retried_in_plain_words(hub: FakeHub) -> None:
    hub.faults.drop_at_byte = SIZE // 3
    downloader = make_downloader(hub)
    seen: list[DownloadProgress] = []
    result = downloader.download(downloader.enqueue(downloader.plan(REPO, "Q4_K_M")), seen.append)
    assert result.path.read_bytes() == DATA
    waits = [p.message for p in seen if p.phase == "waiting"]
    print(f"\nwhile retrying: {waits}")
    assert waits and all("Errno" not in message for message in waits)
