"""Downloading while offline, in the model manager with real widgets: the Hub is an address that refuses
connections (the fake hub, stopped, or a port nothing listens on), and the row the person clicked says why."""

from __future__ import annotations

import logging
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.models.catalog import find_entry
from app.core.models.downloads.downloader import Downloader
from app.core.models.downloads.queue import DownloadQueue
from app.ui.model_manager import ModelManagerDialog
from tests.fixtures.fake_hub import FakeHub, use_fake_hub_only
from tests.helpers.hardware import laptop

pytestmark = pytest.mark.gui

SMOL = "bartowski/SmolLM2-135M-Instruct-GGUF"
Q4 = "SmolLM2-135M-Instruct-Q4_K_M.gguf"


def refused_endpoint() -> str:
    """An address on this machine where nothing listens: every connection is refused, as when offline."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def hub_allowed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    use_fake_hub_only(monkeypatch, tmp_path)
    yield


def open_dialog(qtbot: QtBot, endpoint: str) -> ModelManagerDialog:
    entry = find_entry(SMOL)
    assert entry is not None
    dialog = ModelManagerDialog(
        None, endpoint=endpoint, hardware=laptop(), context_size=4096, entries=[entry]
    )
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def assert_says_why(dialog: ModelManagerDialog, row: int) -> str:
    cell = dialog.action_cell(row)
    sentence = cell.download_button.toolTip()
    assert "cannot be reached (the connection was refused)" in sentence
    assert cell.problem.isVisible() and cell.problem.text() == "Not downloaded"
    assert cell.download_button.isVisible() and cell.download_button.isEnabled()
    assert cell.download_button.text() == "Retry"
    assert "SmolLM2 135M Instruct was not downloaded" in dialog.notice.text() and dialog.notice.isVisible()
    assert "Errno" not in dialog.notice.text()
    return sentence


def test_a_new_download_while_offline_says_why_in_its_row(
    qtbot: QtBot, hub_allowed: None, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    dialog = open_dialog(qtbot, refused_endpoint())
    row = dialog.row_index(SMOL)
    failures: list[tuple[str, str]] = []
    dialog.download_failed.connect(lambda repo, sentence: failures.append((repo, sentence)))
    caplog.set_level(logging.WARNING)
    qtbot.mouseClick(dialog.action_cell(row).download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(failures), timeout=20_000)
    sentence = assert_says_why(dialog, row)
    print(f"\nin the row: {sentence}")
    assert failures == [(SMOL, sentence)]
    _out, err = capfd.readouterr()
    assert "Errno" not in err and "Traceback" not in err  # no library text in the terminal either
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    dialog.downloads.shutdown()


def test_resuming_a_download_while_offline_fails_at_once_and_says_why(
    qtbot: QtBot, hub_allowed: None
) -> None:
    with FakeHub() as hub:
        hub.add_repo(SMOL, {Q4: random.Random(1).randbytes(2 * 1024 * 1024)})
        online = Downloader(DownloadQueue(), endpoint=hub.url)
        online.enqueue(online.plan(SMOL, "Q4_K_M"))  # planned, then the network went away
        endpoint = hub.url
    dialog = open_dialog(qtbot, endpoint)
    dialog.show_model(SMOL, "Q4_K_M")
    row = dialog.row_index(SMOL)
    assert dialog.catalog_table.currentRow() == row
    cell = dialog.action_cell(row)
    assert cell.download_button.text() == "Resume"
    qtbot.mouseClick(cell.download_button, Qt.MouseButton.LeftButton)
    # The transfer's own retries (8, backing off up to a minute) are not waited for: it cannot connect at all.
    qtbot.waitUntil(lambda: dialog.action_cell(row).problem.isVisible(), timeout=5_000)
    print(f"\nin the row: {assert_says_why(dialog, row)}")
    dialog.downloads.shutdown()
