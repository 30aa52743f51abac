"""Choosing and loading models in the window: a refused chat template, and a built-in one chosen instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.core import settings as settings_store
from app.core.history.store import HistoryStore
from app.core.settings import Settings
from app.ui.main_window import MainWindow
from tests.helpers.gguf import with_template

pytestmark = pytest.mark.gui

RAISES = "{{ raise_exception('Only user and assistant roles are supported!') }}"


def test_a_refused_template_offers_the_built_ins_and_the_choice_is_remembered(
    qtbot: QtBot, smollm2_path: Path, tmp_path: Path
) -> None:
    """On SmolLM2 whichever test model is chosen: the hostile template is written over the file's own, and
    Gemma's file has none to overwrite."""
    broken = with_template(smollm2_path, tmp_path, "raises", RAISES)
    settings = Settings(context_size=1024, mode_overrides={"chat": {"temperature": 0.0}})
    window = MainWindow(settings=settings, store=HistoryStore(), open_default_model=False)
    qtbot.addWidget(window)
    window.show()
    refused: list[tuple[str, str]] = []
    window.models.template_refused.connect(lambda sentence, path: refused.append((sentence, path)))
    window.load_model(str(broken))
    qtbot.waitUntil(lambda: bool(refused), timeout=30_000)
    sentence, path = refused[0]
    assert path == str(broken) and "chat template" in sentence and "ChatML" in sentence
    assert window.banner.isVisible() and window.banner.action_button.text() == "Choose a chat template…"
    assert window.bridge.model is None

    window.models.load_with_template(path, "chatml")
    qtbot.waitUntil(lambda: window.bridge.model is not None, timeout=30_000)
    assert settings_store.load().settings.chat_templates == {path: "chatml"}
    window.input.setPlainText("What is the capital of France?")
    window.send()
    qtbot.waitUntil(lambda: not window.bridge.is_generating, timeout=60_000)
    reply = window.chat_view.messages[-1]
    assert reply.role == "assistant" and reply.text and reply.state == "complete"
    window.close()


def test_a_chat_template_setting_that_names_no_built_in_falls_back_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"chat_templates": {"/models/a.gguf": "vicuna"}}')
    loaded = settings_store.load(path)
    assert loaded.settings.chat_templates == {}
    assert any("chat templates" in warning for warning in loaded.warnings)
