"""Settings as pages (issue 22): a list of pages on the left, one page at a time on the right; each former
section on its page, no page that needs a scroll at the default size, and the page shown last shown again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QWidget
from pytestqt.qtbot import QtBot

from app.core.modes import Mode
from app.core.settings import Settings
from app.ui.settings_dialog import PAGES, SettingsDialog

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def first_page_first() -> Iterator[None]:
    """The page shown last is remembered while the app runs: each test starts as a fresh app does."""
    SettingsDialog.last_page = 0
    yield
    SettingsDialog.last_page = 0


def click_page(dialog: SettingsDialog, name: str) -> None:
    """Choose a page as a person does: a click on its name in the list."""
    item = dialog.page_list.item(PAGES.index(name))
    rect = dialog.page_list.visualItemRect(item)
    QTest.mouseClick(dialog.page_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def widgets_of(dialog: SettingsDialog) -> dict[str, list[QWidget]]:
    """What each page holds, from each section the one long dialog had."""
    return {
        "Engine": [
            dialog.threads,
            dialog.context_size,
            dialog.engine_section,
            dialog.engine_section.url,
            dialog.saved_states_section.budget,
        ],
        "Models": [dialog.templates_section, dialog.templates_section.table],
        "Modes": [dialog.mode_tabs, dialog.mode_editors[Mode.CHAT].top_p],
        "Appearance": [dialog.theme],
        "Other apps": [dialog.serve_section, dialog.serve_section.enabled, dialog.serve_section.port],
    }


def test_five_pages_and_the_list_shows_each_with_its_own_widgets(qtbot: QtBot) -> None:
    dialog = SettingsDialog(Settings())
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    names = [dialog.page_list.item(row).text() for row in range(dialog.page_list.count())]
    assert names == ["Engine", "Models", "Modes", "Appearance", "Other apps"]
    assert dialog.pages.currentWidget() is dialog.page("Engine")
    held = widgets_of(dialog)
    for name in ["Other apps", "Modes", "Models", "Appearance", "Engine"]:
        click_page(dialog, name)
        assert dialog.pages.currentWidget() is dialog.page(name)
        assert dialog.page_list.currentItem().text() == name
        for page, widgets in held.items():
            for widget in widgets:
                assert dialog.page(page).isAncestorOf(widget), f"{widget.accessibleName()} is on {page}"
                assert widget.isVisible() == (page == name), f"{widget!r} on {page} while {name} is shown"


def test_no_page_needs_a_scroll_at_the_default_size_and_ok_stays_in_reach(
    qtbot: QtBot, smollm2_path: object
) -> None:
    """The one long dialog was 860 pixels of sections with the server at the bottom; each page now fits a
    laptop's screen (the Models page with the starter listed)."""
    dialog = SettingsDialog(Settings())
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    screen = dialog.screen().availableGeometry()
    assert dialog.height() <= screen.height() and dialog.width() <= screen.width()
    ok = dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
    for name in PAGES:
        click_page(dialog, name)
        page = dialog.page(name)
        content = page.widget()
        print(f"{name}: content {content.minimumSizeHint().height()} px in {page.viewport().height()} px")
        assert page.verticalScrollBar().maximum() == 0, f"the {name} page scrolls at the default size"
        assert ok.isVisible() and dialog.rect().contains(ok.mapTo(dialog, ok.rect().bottomRight()))


def test_the_page_shown_last_opens_first_the_next_time(qtbot: QtBot) -> None:
    first = SettingsDialog(Settings())
    qtbot.addWidget(first)
    first.show()
    click_page(first, "Other apps")
    first.reject()
    second = SettingsDialog(Settings())
    qtbot.addWidget(second)
    assert second.page_list.currentItem().text() == "Other apps"
    assert second.pages.currentWidget() is second.page("Other apps")


def test_ok_keeps_the_edits_of_every_page_and_cancel_rejects(qtbot: QtBot) -> None:
    dialog = SettingsDialog(Settings(serve_port=8123))
    qtbot.addWidget(dialog)
    dialog.show()
    click_page(dialog, "Appearance")
    dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
    click_page(dialog, "Other apps")
    dialog.serve_section.port.setValue(9001)
    click_page(dialog, "Engine")
    dialog.threads.setValue(2)
    buttons = dialog.findChild(QDialogButtonBox)
    QTest.mouseClick(buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)
    assert dialog.result() == QDialog.DialogCode.Accepted
    result = dialog.result_settings()
    assert (result.theme, result.serve_port, result.threads) == ("dark", 9001, 2)

    again = SettingsDialog(Settings())
    qtbot.addWidget(again)
    again.show()
    buttons = again.findChild(QDialogButtonBox)
    QTest.mouseClick(buttons.button(QDialogButtonBox.StandardButton.Cancel), Qt.MouseButton.LeftButton)
    assert again.result() == QDialog.DialogCode.Rejected
