"""Settings → Other apps → "Requests answered together": the number round-trips through the dialog and the settings
file (a bad stored value falls back with a warning); the window loads its model with room for that many requests
while it serves other apps, and for one otherwise; a change in Settings loads the model again; the status bar says
how many requests the server answers at once."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from pytestqt.qtbot import QtBot

from app.core import settings as settings_store
from app.core.history.store import HistoryStore
from app.core.llm.load_options import MAX_PARALLEL, LoadOptions
from app.core.llm.protocol import local_engine
from app.core.modes import Mode
from app.core.settings import Settings
from app.ui.engine_bridge import EngineBridge
from app.ui.main_window import MainWindow
from app.ui.model_picker import window_load_options
from app.ui.settings_dialog import SettingsDialog
from app.ui.settings_serve import PARALLEL_LABEL, ServeSection

pytestmark = pytest.mark.gui

CONTEXT = 2048


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RecordingBridge(EngineBridge):
    """The window's real bridge and engine service, noting the options each load asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[LoadOptions] = []

    def load(self, path: str, options: LoadOptions) -> None:
        self.asked.append(options)
        super().load(path, options)


def engine_load_options(window: MainWindow) -> LoadOptions | None:
    """What the engine itself, on its own thread, says the loaded model was loaded with."""
    job = window.bridge.service.client("test").start_job(
        lambda engine, _cancel: local_engine(engine).load_options
    )
    return job.result()


def change_in_settings(qtbot: QtBot, window: MainWindow, edit: Callable[[ServeSection], None]) -> None:
    """Open Settings from the window, change the Other apps section as a person would, and press OK."""

    def on_open() -> None:
        (dialog,) = [d for d in window.findChildren(SettingsDialog) if d.isVisible()]
        dialog.show_page("Other apps")
        edit(dialog.serve_section)
        dialog.accept()

    QTimer.singleShot(0, on_open)
    window.open_settings()


def test_the_number_round_trips_through_the_dialog_and_the_settings_file(
    qtbot: QtBot, tmp_path: Path
) -> None:
    dialog = SettingsDialog(Settings(serve_parallel=3))
    qtbot.addWidget(dialog)
    dialog.show_page("Other apps")
    spin = dialog.serve_section.parallel
    assert spin.accessibleName() == PARALLEL_LABEL and spin.toolTip()
    assert (spin.value(), spin.minimum(), spin.maximum()) == (3, 0, MAX_PARALLEL)
    spin.setValue(0)
    assert spin.text() == "Automatic"
    spin.setValue(5)
    updated = dialog.result_settings()
    assert updated.serve_parallel == 5
    dialog.serve_section.restore_defaults()
    assert dialog.result_settings().serve_parallel == 0 == Settings().serve_parallel

    stored = tmp_path / "settings.json"
    settings_store.save(updated, stored)
    assert json.loads(stored.read_text())["serve_parallel"] == 5
    assert settings_store.load(stored).settings.serve_parallel == 5

    for bad in (99, -1, "x", True):
        stored.write_text(json.dumps({"serve_parallel": bad, "serve_port": 9001}))
        loaded = settings_store.load(stored)
        assert loaded.settings.serve_parallel == 0 and loaded.settings.serve_port == 9001
        assert len(loaded.warnings) == 1 and "'serve_parallel'" in loaded.warnings[0]


def test_the_window_loads_with_room_for_other_apps_only_while_it_serves_them() -> None:
    path = "/models/m.gguf"
    alone = window_load_options(Settings(context_size=CONTEXT, serve_parallel=4), path)
    assert (alone.parallel, alone.context_size) == (1, CONTEXT)  # not serving: nobody else can ask
    automatic = window_load_options(Settings(context_size=CONTEXT, serve_enabled=True), path)
    assert (automatic.parallel, automatic.context_size) == (
        0,
        CONTEXT,
    )  # the engine chooses, each gets CONTEXT
    three = window_load_options(Settings(context_size=CONTEXT, serve_enabled=True, serve_parallel=3), path)
    assert (three.parallel, three.context_size) == (3, 3 * CONTEXT)  # shared three ways: CONTEXT each
    one = window_load_options(Settings(context_size=CONTEXT, serve_enabled=True, serve_parallel=1), path)
    assert (one.parallel, one.context_size) == (1, CONTEXT)


def test_the_number_set_is_what_the_window_loads_and_a_change_reloads(qtbot: QtBot, model_path: Path) -> None:
    port = free_port()
    overrides = {mode.value: {"temperature": 0.0} for mode in Mode}
    settings = Settings(
        context_size=CONTEXT,
        last_model=str(model_path),
        mode_overrides=overrides,
        serve_enabled=True,
        serve_port=port,
        serve_parallel=2,
    )
    bridge = RecordingBridge()
    window = MainWindow(settings=settings, store=HistoryStore(), bridge=bridge)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.bridge.model is not None, timeout=60_000)

    # Serving with 2: the engine loaded room for two requests, each with the context size set in Engine.
    loaded = engine_load_options(window)
    assert loaded is not None and loaded.parallel == 2
    assert (
        bridge.model is not None
        and bridge.model.parallel == loaded.parallel
        and bridge.asked[-1].parallel == 2
    )
    assert window.bridge.model is not None and window.bridge.model.context_size == CONTEXT
    qtbot.waitUntil(lambda: window.serving.base_url is not None, timeout=30_000)
    assert "2 at once" in window.serving.address.text()
    assert "2 requests together" in window.serving.address.toolTip()

    # Another number in Settings: the model loads again with it.
    asked = len(bridge.asked)
    with qtbot.waitSignal(window.bridge.model_loaded, timeout=60_000):
        change_in_settings(qtbot, window, lambda section: section.parallel.setValue(3))
    assert len(bridge.asked) == asked + 1 and window.settings.serve_parallel == 3
    loaded = engine_load_options(window)
    assert (
        loaded is not None
        and loaded.parallel == 3
        and bridge.model is not None
        and bridge.model.parallel == loaded.parallel
    )
    assert "3 at once" in window.serving.address.text()

    # Automatic: the window asks the engine to choose (what it chooses is the engine's to test).
    with qtbot.waitSignal(window.bridge.model_loaded, timeout=60_000):
        change_in_settings(qtbot, window, lambda section: section.parallel.setValue(0))
    assert bridge.asked[-1].parallel == 0 and bridge.asked[-1].context_size == CONTEXT

    # Serving off: one request at a time, no memory kept for other apps.
    with qtbot.waitSignal(window.bridge.model_loaded, timeout=60_000):
        change_in_settings(qtbot, window, lambda section: section.enabled.setChecked(False))
    loaded = engine_load_options(window)
    assert loaded is not None and loaded.parallel == 1 and bridge.asked[-1].parallel == 1

    # While nobody is served, the number changes nothing loaded: no reload.
    asked = len(bridge.asked)
    change_in_settings(qtbot, window, lambda section: section.parallel.setValue(4))
    assert window.settings.serve_parallel == 4
    assert len(bridge.asked) == asked and not window.bridge.is_loading
    qtbot.waitUntil(lambda: not window.serving.indicator.isVisible(), timeout=30_000)
