"""Settings -> Engine with real widgets (offscreen): the dialog's section against a real server of ours on
127.0.0.1, and the window switching from this computer's model to a server's and back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core import settings as settings_store
from app.core.history.store import HistoryStore
from app.core.llm.remote_info import RemoteModelInfo
from app.core.settings import Settings
from app.ui.settings_engine import STAYED_LOCAL, EngineSection
from tests.fixtures.misbehaving_openai import MODEL, RunningServer, running_server
from tests.helpers.window import open_window

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def faulty() -> Iterator[RunningServer]:
    with running_server() as server:
        yield server


def test_the_section_lists_the_servers_models_and_becomes_settings(
    qtbot: QtBot, faulty: RunningServer
) -> None:
    section = EngineSection(Settings())
    qtbot.addWidget(section)
    assert section.local.isChecked() and not section.url.isEnabled()
    section.server.setChecked(True)
    section.url.setText(faulty.url("ok"))
    section.api_key.setText("secret-2")
    qtbot.mouseClick(section.fetch, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: section.model.findData(MODEL) >= 0, timeout=10_000)
    assert faulty.observed.authorizations[-1] == "Bearer secret-2"
    section.model.setCurrentIndex(section.model.findData(MODEL))
    section.read_timeout.setValue(60)
    section.wait_seconds.setValue(30)
    settings = Settings()
    section.apply_to(settings)
    assert (settings.engine, settings.remote_url, settings.remote_api_key, settings.remote_model) == (
        "server",
        faulty.url("ok"),
        "secret-2",
        MODEL,
    )
    assert settings.remote_read_timeout == 60 and settings.remote_wait_seconds == 30
    assert section.edited_server().wait_seconds == 30


def test_a_refusing_server_is_a_sentence_in_the_section(qtbot: QtBot, faulty: RunningServer) -> None:
    section = EngineSection(Settings(engine="server", remote_url=faulty.url("unauthorized")))
    qtbot.addWidget(section)
    section.fetch_models()
    qtbot.waitUntil(lambda: "401" in section.status.text(), timeout=10_000)


def test_the_window_switches_to_a_server_and_back(
    qtbot: QtBot, faulty: RunningServer, model_path: Path
) -> None:
    window = open_window(qtbot, model_path)
    local = window.bridge.model
    assert local is not None and not isinstance(local, RemoteModelInfo)

    # A server that refuses: a sentence, and this computer's model stays.
    window.settings.engine, window.settings.remote_url = "server", faulty.url("unauthorized")
    assert window.engine_switcher.apply(window.settings)
    qtbot.waitUntil(lambda: "401" in window.banner.label.text(), timeout=10_000)
    assert window.bridge.model is local and not window.engine_switcher.remote
    # The settings say what runs: this computer, saved so, and the sentence says how to choose the server again.
    assert window.settings.engine == "local" and settings_store.load().settings.engine == "local"
    assert STAYED_LOCAL.strip() in window.banner.label.text()

    window.settings.engine, window.settings.remote_url = "server", faulty.url("ok")
    window.engine_switcher.apply(window.settings)
    qtbot.waitUntil(lambda: isinstance(window.bridge.model, RemoteModelInfo), timeout=10_000)
    assert f"{MODEL} (server)" in window.models.model_label.text()
    # The refusal's sentence no longer holds: gone from the banner; the switch is noted in the status bar.
    assert window.banner.isHidden() and "answers now" in window.statusBar().currentMessage()
    assert window.settings.last_model == str(model_path)  # a server's model is not remembered as a file

    window.input.setFocus()
    qtbot.keyClicks(window.input, "Hello?")
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.bridge.is_generating, timeout=10_000)
    store = HistoryStore()
    conversation_id = window.conversation.conversation_id
    assert conversation_id is not None
    reply = store.messages(conversation_id)[-1]
    assert reply.content == "Hello world." and reply.stats is not None
    assert (reply.stats["engine"], reply.stats["model"]) == ("server", MODEL)
    store.close()

    # A stream dropped mid-reply: the sentence in the banner, the part that arrived kept and marked stopped.
    window.settings.remote_url = faulty.url("drop")
    window.engine_switcher.apply(window.settings)
    qtbot.waitUntil(
        lambda: window.engine_switcher.active is not None and not window.bridge.is_busy, timeout=10_000
    )
    window.input.setFocus()
    qtbot.keyClicks(window.input, "And again?")
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "broke off" in window.banner.label.text(), timeout=10_000)
    store = HistoryStore()
    partial = store.messages(conversation_id)[-1]
    assert (partial.role, partial.content, partial.state) == ("assistant", "Hello wor", "stopped")
    store.close()

    # Back to this computer: the model used last loads again.
    window.settings.engine = "local"
    window.engine_switcher.apply(window.settings)
    qtbot.waitUntil(
        lambda: window.bridge.model is not None and not isinstance(window.bridge.model, RemoteModelInfo),
        timeout=30_000,
    )
    assert window.bridge.model.path == local.path
    assert window.banner.isHidden()  # the dropped stream's sentence was about the server
    window.close()


def test_the_window_opens_on_the_chosen_server_or_falls_back_to_this_computer(
    qtbot: QtBot, faulty: RunningServer, model_path: Path
) -> None:
    window = open_window(qtbot, model_path, engine="server", remote_url=faulty.url("ok"))
    assert isinstance(window.bridge.model, RemoteModelInfo)
    window.close()

    # A server that cannot be used at startup: its sentence, and the model on this computer loads meanwhile.
    window = open_window(qtbot, model_path, engine="server", remote_url=faulty.url("unauthorized"))
    assert window.bridge.model is not None and window.bridge.model.path == model_path
    assert "401" in window.banner.label.text()
    assert window.settings.engine == "local"  # what runs, as Settings → Engine will show it
    window.close()
