"""The Library panel offers the recommended embedding model and fetches it through the window's downloads,
against the fake hub on 127.0.0.1: a file that matches its pin is installed and chosen for the library being
added; a file that does not gets the download's sentence, and nothing is installed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.core.models.catalog import load_embedding_catalog
from app.core.models.downloads.downloader import Downloader
from app.core.models.downloads.queue import DownloadQueue
from app.core.models.inventory import embedding_model_path as installed_at
from app.core.models.inventory import installed_embedding_model
from app.core.paths import app_paths
from app.ui.downloads import Downloads
from app.ui.library_jobs import LibraryThread
from app.ui.library_panel import LibraryPanel
from tests.fixtures.fake_hub import FakeHub, use_fake_hub_only

pytestmark = pytest.mark.gui

DOWNLOAD_TIMEOUT_MS = 60_000


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    use_fake_hub_only(monkeypatch, tmp_path)
    with FakeHub() as fake:
        yield fake


def panel_with(qtbot: QtBot, downloader: Downloader) -> tuple[LibraryPanel, Downloads, LibraryThread]:
    db_path = app_paths().ensure().library_db
    thread = LibraryThread(db_path)
    downloads = Downloads(downloader=downloader)
    panel = LibraryPanel(thread, db_path, downloads=downloads)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: panel.loaded, timeout=10_000)
    return panel, downloads, thread


def close(panel: LibraryPanel, downloads: Downloads, thread: LibraryThread) -> None:
    downloads.shutdown()
    downloads.controller.wait(10)
    panel.shutdown()
    thread.shutdown()


def test_the_recommended_model_is_downloaded_from_the_panel_and_chosen(
    qtbot: QtBot, hub: FakeHub, embedding_model_path: Path, tmp_path: Path
) -> None:
    entry = load_embedding_catalog()[0]
    # The Hub cannot be reached here: the fake one serves the test embedding model under the recommended
    # model's name, and the downloader is given its hash as the pin.
    data = embedding_model_path.read_bytes()
    pinned = replace(entry, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    hub.add_repo(entry.repo_id, {entry.file: embedding_model_path})
    downloader = Downloader(DownloadQueue(), endpoint=hub.url, pins=[pinned])
    panel, downloads, thread = panel_with(qtbot, downloader)
    try:
        folder = tmp_path / "notes"
        folder.mkdir()
        panel.open_add_form([folder])
        offer = panel.recommended_model
        assert offer is not None and offer.isVisible()
        assert entry.name in offer.button.text()
        assert panel.embedding_model is None and "words alone" in panel.model_label.text()

        offer.button.click()
        qtbot.waitUntil(lambda: panel.embedding_model is not None, timeout=DOWNLOAD_TIMEOUT_MS)
        assert panel.embedding_model == installed_at(entry) == installed_embedding_model()
        assert "words and meaning" in panel.model_label.text()
        assert not offer.isVisible()  # nothing left to get
    finally:
        close(panel, downloads, thread)


def test_a_file_other_than_the_pinned_one_is_refused_with_a_sentence(
    qtbot: QtBot, hub: FakeHub, tmp_path: Path
) -> None:
    entry = load_embedding_catalog()[0]
    hub.add_repo(entry.repo_id, {entry.file: b"GGUF" + bytes(8192)})
    panel, downloads, thread = panel_with(qtbot, Downloader(DownloadQueue(), endpoint=hub.url))
    try:
        folder = tmp_path / "notes"
        folder.mkdir()
        panel.open_add_form([folder])
        offer = panel.recommended_model
        assert offer is not None
        panel.resize(360, 640)
        narrowest = panel.minimumSizeHint().width()
        offer.button.click()
        qtbot.waitUntil(
            lambda: "not the file LlamaDesk knows" in offer.status.text(), timeout=DOWNLOAD_TIMEOUT_MS
        )
        # The sentence wraps under the button: it does not widen the dock (squeezing the conversation).
        assert panel.minimumSizeHint().width() <= narrowest
        assert offer.button.isEnabled()  # it can be tried again
        assert installed_embedding_model() is None and not installed_at(entry).exists()
        assert panel.embedding_model is None
    finally:
        close(panel, downloads, thread)
