"""Settings → Models (issue 22): the chat template of every installed model, chosen in the window. Each model
says which template it uses now; a choice made and confirmed with OK is stored, and the loaded model is loaded
again with it (its status says so); removing the choice goes back to the file's own template."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDialogButtonBox
from pytestqt.qtbot import QtBot

from app.core import settings as settings_store
from app.core.history.store import HistoryStore
from app.core.llm.templates import BUILTIN_TEMPLATES
from app.core.settings import Settings
from app.ui.main_window import MainWindow
from app.ui.settings_dialog import PAGES, SettingsDialog
from app.ui.settings_models import ModelTemplatesSection

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def first_page_first() -> Iterator[None]:
    SettingsDialog.last_page = 0
    yield
    SettingsDialog.last_page = 0


def templates_read(qtbot: QtBot, section: ModelTemplatesSection) -> None:
    qtbot.waitUntil(lambda: len(section.files) == len(section.choices), timeout=30_000)


def choice_labels(section: ModelTemplatesSection, path: Path) -> list[str]:
    combo = section.choices[str(path)]
    return [combo.itemText(index) for index in range(combo.count())]


def test_the_models_page_lists_each_model_with_the_template_it_uses(
    qtbot: QtBot, smollm2_path: Path, gemma_path: Path
) -> None:
    """SmolLM2 carries a ChatML template; Gemma 3 270M carries none, and gets Gemma's automatically."""
    dialog = SettingsDialog(Settings(imported_models=[str(gemma_path)]), loaded_model=str(smollm2_path))
    qtbot.addWidget(dialog)
    dialog.show_page("Models")
    section = dialog.templates_section
    assert dialog.page("Models").isAncestorOf(section.table)
    assert {str(smollm2_path), str(gemma_path)} <= set(section.choices)
    templates_read(qtbot, section)

    assert section.uses_now(str(smollm2_path)) == "The file's own"
    assert choice_labels(section, smollm2_path) == [
        "The file's own (ChatML)",
        *[template.title for template in BUILTIN_TEMPLATES.values()],
    ]
    assert section.uses_now(str(gemma_path)) == "Gemma (the file has none)"
    assert choice_labels(section, gemma_path)[0] == "Automatic: Gemma"
    loaded_row = section.row_of(str(smollm2_path))
    assert section.table.item(loaded_row, 0).text().endswith("(loaded)")
    assert dialog.result_settings().chat_templates == {}  # nothing chosen, nothing stored


def test_a_choice_is_stored_shown_and_removed_again(
    qtbot: QtBot, smollm2_path: Path, gemma_path: Path
) -> None:
    chosen = {str(gemma_path): "chatml", "/gone/model.gguf": "phi3"}
    dialog = SettingsDialog(Settings(imported_models=[str(gemma_path)], chat_templates=chosen))
    qtbot.addWidget(dialog)
    section = dialog.templates_section
    templates_read(qtbot, section)
    gemma = section.choices[str(gemma_path)]
    assert gemma.currentData() == "chatml"
    assert section.uses_now(str(gemma_path)) == "ChatML (chosen)"

    gemma.setCurrentIndex(gemma.findData("gemma"))
    section.choices[str(smollm2_path)].setCurrentIndex(section.choices[str(smollm2_path)].findData("llama3"))
    result = dialog.result_settings()
    # A file no longer on the disk keeps its choice: it may come back (an unplugged drive).
    assert result.chat_templates == {
        str(gemma_path): "gemma",
        str(smollm2_path): "llama3",
        "/gone/model.gguf": "phi3",
    }

    gemma.setCurrentIndex(0)  # back to the automatic one
    assert str(gemma_path) not in dialog.result_settings().chat_templates
    dialog._restore_defaults()
    assert dialog.result_settings().chat_templates == {"/gone/model.gguf": "phi3"}


def choose_in_settings(qtbot: QtBot, window: MainWindow, path: Path, template: str) -> None:
    """Open Settings from the window, pick ``template`` ("" for the file's own) for ``path`` on the Models page
    and press OK, as a person does."""

    def in_the_dialog() -> None:
        (dialog,) = [d for d in window.findChildren(SettingsDialog) if d.isVisible()]
        item = dialog.page_list.item(PAGES.index("Models"))
        QTest.mouseClick(
            dialog.page_list.viewport(),
            Qt.MouseButton.LeftButton,
            pos=dialog.page_list.visualItemRect(item).center(),
        )
        section = dialog.templates_section
        assert section.table.isVisible()
        assert section.table.item(section.row_of(str(path)), 0).text().endswith("(loaded)")
        combo = section.choices[str(path)]
        combo.setCurrentIndex(combo.findData(template))
        ok = dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
        QTest.mouseClick(ok, Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, in_the_dialog)
    window.open_settings()


def test_choosing_a_template_for_the_loaded_model_loads_it_again_with_it(
    qtbot: QtBot, smollm2_path: Path
) -> None:
    window = MainWindow(settings=Settings(context_size=1024), store=HistoryStore(), open_default_model=False)
    qtbot.addWidget(window)
    window.show()
    window.load_model(str(smollm2_path))
    qtbot.waitUntil(lambda: window.bridge.model is not None, timeout=60_000)
    first = window.bridge.model
    assert first is not None and first.template_note == ""  # its own ChatML template

    choose_in_settings(qtbot, window, smollm2_path, "llama3")
    qtbot.waitUntil(
        lambda: window.bridge.model is not None and window.bridge.model is not first, timeout=60_000
    )
    reloaded = window.bridge.model
    assert reloaded is not None and str(reloaded.path) == str(smollm2_path)
    assert reloaded.template_note == "using the built-in Llama 3 chat template chosen for it"
    assert "Llama 3" in window.models.model_label.text()
    assert settings_store.load().settings.chat_templates == {str(smollm2_path): "llama3"}

    choose_in_settings(qtbot, window, smollm2_path, "")  # the choice removed: the file's own again
    qtbot.waitUntil(lambda: window.bridge.model is not reloaded, timeout=60_000)
    qtbot.waitUntil(lambda: window.bridge.model is not None, timeout=60_000)
    again = window.bridge.model
    assert again is not None and again.template_note == ""
    assert "Llama 3" not in window.models.model_label.text()
    assert settings_store.load().settings.chat_templates == {}
    window.close()


def test_a_file_that_cannot_be_loaded_says_so_and_offers_no_choice(qtbot: QtBot, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 60)
    dialog = SettingsDialog(Settings(imported_models=[str(broken)]))
    qtbot.addWidget(dialog)
    dialog.show_page("Models")
    dialog.show()
    section = dialog.templates_section
    templates_read(qtbot, section)
    assert section.uses_now(str(broken)) == "Cannot be loaded"
    assert not section.choices[str(broken)].isEnabled()
    assert section.uses_items[str(broken)].toolTip().startswith("The model file broken.gguf")
    assert section.status.isVisible() and "cannot be loaded" in section.status.text()
