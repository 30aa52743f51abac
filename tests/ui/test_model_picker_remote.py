"""The window while a server answers (Settings → Engine), with real widgets offscreen, a real OpenAI-compatible
server of ours on 127.0.0.1 (the misbehaving fake, on its well-behaved ``ok`` URL) and the real test model: a
model file chosen in the picker makes this computer the engine again and loads it; the status bar names the server
and its model, and does not offer the local API, which refuses requests then; a server that went down is not
described as answering."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox
from pytestqt.qtbot import QtBot

from app.core import settings as settings_store
from app.core.llm.remote_info import RemoteModelInfo
from app.ui.main_window import MainWindow
from tests.fixtures.misbehaving_openai import MODEL, RunningServer, running_server
from tests.helpers.window import open_window

pytestmark = pytest.mark.gui

LOAD_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def fake_server() -> Iterator[RunningServer]:
    with running_server() as server:
        yield server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def health(base_url: str) -> tuple[int, dict[str, object]]:
    """The local API's /health, as another app sees it: its status code and body."""
    url = base_url.removesuffix("/v1") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def choose_in_picker(qtbot: QtBot, picker: QComboBox, data: str) -> None:
    """Open the picker's list and click the row holding ``data``, as a person does."""
    index = picker.findData(data)
    assert index >= 0, f"the picker does not offer {data}"
    picker.showPopup()
    view = picker.view()
    qtbot.waitUntil(view.isVisible, timeout=5_000)
    row = view.visualRect(view.model().index(index, 0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=row.center())
    qtbot.waitUntil(lambda: not view.isVisible(), timeout=5_000)


def remote_window(qtbot: QtBot, model_path: Path, url: str, **settings_changes: Any) -> MainWindow:
    window = open_window(
        qtbot,
        model_path,
        engine="server",
        remote_url=url,
        imported_models=[str(model_path)],
        **settings_changes,
    )
    assert isinstance(window.bridge.model, RemoteModelInfo)
    return window


def wait_for_local_model(qtbot: QtBot, window: MainWindow, model_path: Path) -> None:
    qtbot.waitUntil(
        lambda: (
            window.bridge.model is not None
            and not isinstance(window.bridge.model, RemoteModelInfo)
            and window.bridge.model.path == model_path
        ),
        timeout=LOAD_TIMEOUT_MS,
    )


def test_choosing_a_model_file_while_a_server_answers_switches_back_and_loads_it(
    qtbot: QtBot, fake_server: RunningServer, model_path: Path
) -> None:
    window = remote_window(qtbot, model_path, fake_server.url("ok"))
    picker = window.models.picker
    assert picker.currentData() == MODEL  # the server's model is the one shown as in use

    choose_in_picker(qtbot, picker, str(model_path))

    wait_for_local_model(qtbot, window, model_path)
    assert window.banner.isHidden()  # no refusal: the choice was done, not argued with
    assert not window.engine_switcher.remote and window.settings.engine == "local"
    assert settings_store.load().settings.engine == "local"  # the next start opens on this computer too
    assert picker.currentData() == str(model_path)
    assert MODEL not in window.models.model_label.text()
    window.close()


def test_the_status_bar_names_the_server_and_does_not_offer_the_local_api_meanwhile(
    qtbot: QtBot, fake_server: RunningServer, model_path: Path
) -> None:
    url = fake_server.url("ok")
    window = remote_window(qtbot, model_path, url, serve_enabled=True, serve_port=free_port())
    assert window.serving.wait(30)
    qtbot.waitUntil(lambda: window.serving.base_url is not None, timeout=10_000)
    api_url = window.serving.base_url
    assert api_url is not None

    label = window.models.model_label.text()
    assert MODEL in label and url in label  # which model answers, and which server
    entry = window.serving.address.text()
    assert window.serving.indicator.isVisible()
    assert api_url not in entry and not window.serving.copy.isVisible()  # the address is not offered...
    status, body = health(api_url)
    assert status == 503 and body["model"] is None  # ...since it refuses requests, /health included

    # Back on this computer, the local API serves its model again, and the status bar offers it again.
    choose_in_picker(qtbot, window.models.picker, str(model_path))
    wait_for_local_model(qtbot, window, model_path)
    qtbot.waitUntil(lambda: api_url in window.serving.address.text(), timeout=5_000)
    assert window.serving.copy.isVisible()
    status, body = health(api_url)
    assert status == 200 and body["model"]
    assert url not in window.models.model_label.text()
    window.close()


def test_a_server_that_went_down_is_not_described_as_answering(qtbot: QtBot, model_path: Path) -> None:
    with running_server() as server:
        url = server.url("ok")
        window = remote_window(qtbot, model_path, url)
        answering_label = window.models.model_label.text()
        answering_tip = window.models.picker.toolTip()
    # The server is gone; a question to it fails, and keeps its Retry (tested with the failed question).
    window.input.setFocus()
    qtbot.keyClicks(window.input, "Are you there?")
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.banner.isVisible() and not window.bridge.is_generating, timeout=30_000)

    label = window.models.model_label.text()
    assert label != answering_label and url in label  # the status bar says so, naming the server...
    assert window.models.picker.toolTip() != answering_tip  # ...and so does the picker
    assert window.models.server_failure

    # Choosing a model file is not refused on behalf of the server that is down: this computer answers.
    choose_in_picker(qtbot, window.models.picker, str(model_path))
    wait_for_local_model(qtbot, window, model_path)
    assert window.banner.isHidden() and not window.models.server_failure
    assert url not in window.models.model_label.text()
    window.close()
