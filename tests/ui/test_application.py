"""Starting the window: it opens even when llama.cpp's bindings are broken, and says so when a model loads."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

import app.core.llm.bindings as bindings_module
from app.ui.application import configure_logging, open_main_window
from app.ui.main_window import MainWindow

pytestmark = pytest.mark.gui


def test_window_opens_when_the_bindings_cannot_be_imported(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, llamadesk_home: Path
) -> None:
    def broken_build() -> None:  # stands in for a llama.cpp wheel whose shared library is missing
        raise OSError("libllama.so: cannot open shared object file")

    monkeypatch.setattr(bindings_module, "import_backend", broken_build)
    configure_logging()
    window = open_main_window(argparse.Namespace(model=None, no_model=True))
    qtbot.addWidget(window)
    assert isinstance(window, MainWindow)
    window.show()
    assert window.isVisible()
    window.close()
    log = (llamadesk_home / "logs" / "llamadesk.log").read_text()
    assert "bindings could not be imported" in log and "libllama.so" in log
