"""The model manager with real widgets (offscreen), downloading from the fake hub on 127.0.0.1."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QProgressBar, QPushButton
from pytestqt.qtbot import QtBot

from app.core.history.store import HistoryStore
from app.core.models.catalog import load_catalog
from app.core.models.downloads.downloader import Downloader
from app.core.models.downloads.queue import STATE_PAUSED, DownloadQueue
from app.core.models.hardware import HardwareInfo
from app.core.paths import app_paths
from app.core.settings import Settings
from app.ui.main_window import MainWindow
from app.ui.model_manager import DownloadCell, ModelManagerDialog
from app.ui.model_manager_columns import COLUMN_FIT, COLUMN_SIZE, COLUMN_SPEED, COLUMN_SPEED_LABEL
from tests.fixtures.fake_hub import FakeHub, use_fake_hub_only
from tests.helpers.hardware import laptop

pytestmark = pytest.mark.gui

LEFT = Qt.MouseButton.LeftButton

GB = 1000**3
SMOL = "bartowski/SmolLM2-135M-Instruct-GGUF"
Q4 = "SmolLM2-135M-Instruct-Q4_K_M.gguf"
Q4_DATA = random.Random(1).randbytes(2 * 1024 * 1024)
Q8_DATA = random.Random(2).randbytes(3 * 1024 * 1024)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    use_fake_hub_only(monkeypatch, tmp_path)
    with FakeHub() as fake:
        fake.add_repo(SMOL, {Q4: Q4_DATA, "SmolLM2-135M-Instruct-Q8_0.gguf": Q8_DATA})
        yield fake


def open_dialog(qtbot: QtBot, hub: FakeHub, hardware: HardwareInfo | None = None) -> ModelManagerDialog:
    dialog = ModelManagerDialog(None, endpoint=hub.url, hardware=hardware or laptop(), context_size=4096)
    qtbot.addWidget(dialog)
    dialog.show()
    # The catalog's file lists arrive from the hub in the background.
    qtbot.waitUntil(lambda: not dialog.menu_rows()[dialog.row_index(SMOL)].sizes_estimated, timeout=20_000)
    return dialog


@pytest.fixture
def dialog(qtbot: QtBot, hub: FakeHub) -> Iterator[ModelManagerDialog]:
    opened = open_dialog(qtbot, hub)
    yield opened
    opened.downloads.shutdown()


def cell_text(dialog: ModelManagerDialog, row: int, column: int) -> str:
    item = dialog.catalog_table.item(row, column)
    assert item is not None
    return item.text()


def test_menu_shows_fit_speed_size_and_the_recommended_quantization(dialog: ModelManagerDialog) -> None:
    table = dialog.catalog_table
    assert table.rowCount() == len(load_catalog()) >= 12
    assert "12.0 GB of 16.0 GB memory free" in dialog.hardware_label.text()
    assert dialog.hardware_label.text() == laptop().summary()  # the CLI prints the same sentence
    llama70 = dialog.row_index("bartowski/Llama-3.3-70B-Instruct-GGUF")
    assert cell_text(dialog, llama70, COLUMN_FIT) == "too large"
    assert cell_text(dialog, llama70, COLUMN_SPEED) == "won't run"  # not "~0.0 tokens/s"
    reasons = [dialog.catalog_table.item(r, COLUMN_FIT).toolTip() for r in range(table.rowCount())]  # type: ignore[union-attr]
    assert not any("about ~" in reason for reason in reasons)
    assert cell_text(dialog, llama70, COLUMN_SIZE).startswith(
        "~"
    )  # the hub has no such repository: estimated
    smol = dialog.row_index(SMOL)
    assert cell_text(dialog, smol, COLUMN_FIT) == "runs well"
    assert cell_text(dialog, smol, COLUMN_SIZE) == "3.1 MB"  # the real Q8_0 file's size, from the hub
    assert "tokens/s" in cell_text(dialog, smol, COLUMN_SPEED)
    combo = table.cellWidget(smol, 2)
    labels = [combo.itemText(i) for i in range(combo.count())]  # type: ignore[union-attr]
    assert labels == ["Q4_K_M", "Q8_0 (recommended)"]
    assert dialog.action_cell(smol).download_button.isVisible()
    # Repositories the hub does not have are reported in one sentence, and their sizes stay estimates.
    assert dialog.notice.isVisible() and "estimates" in dialog.notice.text()


def test_speed_has_its_own_column_and_the_recommended_models_come_first(qtbot: QtBot, hub: FakeHub) -> None:
    # Plenty of memory, a slow memory bus (5 GB/s): an 8B model fits ("runs well") but crawls ("slow").
    dialog = open_dialog(qtbot, hub, laptop(available=23 * GB, total=24 * GB, bandwidth=5e9))
    table = dialog.catalog_table
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]  # type: ignore[union-attr]
    assert headers[COLUMN_FIT] == "Fit" and headers[COLUMN_SPEED_LABEL] == "Speed"
    llama8 = dialog.row_index("bartowski/Meta-Llama-3.1-8B-Instruct-GGUF")
    assert cell_text(dialog, llama8, COLUMN_FIT) == "runs well"
    assert cell_text(dialog, llama8, COLUMN_SPEED_LABEL) == "slow"
    words = {cell_text(dialog, r, COLUMN_SPEED_LABEL) for r in range(table.rowCount())}
    assert {"fast", "usable", "slow"} <= words
    recommended = [row.is_recommended for row in dialog.menu_rows()]
    assert recommended[0] and recommended == sorted(recommended, reverse=True)
    for index, row in enumerate(dialog.menu_rows()):  # the table shows the rows in the menu's order
        assert table.item(index, 0).data(Qt.ItemDataRole.UserRole) == row.entry.repo_id  # type: ignore[union-attr]
    dialog.downloads.shutdown()


def test_labels_follow_the_context_size_and_a_loaded_model(qtbot: QtBot, hub: FakeHub) -> None:
    dialog = open_dialog(qtbot, hub, laptop(available=7 * GB, total=8 * GB))
    row = dialog.row_index("bartowski/Meta-Llama-3.1-8B-Instruct-GGUF")

    def fit_of_q4() -> str:
        combo = dialog.catalog_table.cellWidget(row, 2)
        combo.setCurrentIndex(combo.findData("Q4_K_M"))  # type: ignore[union-attr]
        return cell_text(dialog, row, COLUMN_FIT)

    # About 6.1 GB at 4k tokens: more than 85% of the 7 GB free.
    assert fit_of_q4() == "tight"
    # The model loaded now holds 2 GB that loading this one would free first.
    dialog.set_context(4096, loaded_model_bytes=2 * GB)
    assert fit_of_q4() == "runs well"
    dialog.context_spin.setValue(131072)  # a 16 GiB KV cache
    assert fit_of_q4() == "too large"
    dialog.downloads.shutdown()


def test_download_shows_progress_and_installs(qtbot: QtBot, dialog: ModelManagerDialog, hub: FakeHub) -> None:
    hub.faults.throttle_bytes_per_second = 4 * 1024 * 1024
    smol = dialog.row_index(SMOL)
    combo = dialog.catalog_table.cellWidget(smol, 2)
    combo.setCurrentIndex(combo.findData("Q4_K_M"))  # not the recommended one  # type: ignore[union-attr]
    cell = dialog.action_cell(smol)
    fractions: list[float] = []
    cell.progress.valueChanged.connect(lambda value: fractions.append(value / cell.progress.maximum()))
    with qtbot.waitSignal(dialog.model_installed, timeout=30_000) as installed:
        qtbot.mouseClick(cell.download_button, LEFT)
        qtbot.waitUntil(lambda: cell.progress.isVisible(), timeout=10_000)
    path = Path(installed.args[0])
    assert path == app_paths().models_dir / "bartowski__SmolLM2-135M-Instruct-GGUF" / Q4
    assert path.read_bytes() == Q4_DATA
    assert any(0 < f < 1 for f in fractions)
    qtbot.waitUntil(lambda: dialog.action_cell(smol).use_button.isVisible())
    cell = dialog.action_cell(smol)
    assert not cell.progress.isVisible()
    assert dialog.selected_option(smol).quant == "Q4_K_M"  # the choice survived the refresh  # type: ignore[union-attr]
    ids = [dialog.installed_table.item(i, 0).text() for i in range(dialog.installed_table.rowCount())]  # type: ignore[union-attr]
    assert f"{SMOL}:Q4_K_M" in ids
    chosen: list[str] = []
    dialog.model_chosen.connect(chosen.append)
    qtbot.mouseClick(cell.use_button, LEFT)
    assert chosen == [str(path)]


def test_pause_resume_and_cancel(qtbot: QtBot, dialog: ModelManagerDialog, hub: FakeHub) -> None:
    hub.faults.throttle_bytes_per_second = 1024 * 1024
    smol = dialog.row_index(SMOL)
    cell = dialog.action_cell(smol)
    qtbot.mouseClick(cell.download_button, LEFT)
    qtbot.waitUntil(lambda: cell.progress.isVisible() and cell.progress.value() > 100, timeout=15_000)

    qtbot.mouseClick(cell.pause_button, LEFT)
    qtbot.waitUntil(lambda: not dialog.downloads.controller.active(), timeout=5_000)
    (job,) = DownloadQueue().jobs()
    assert job.state == STATE_PAUSED
    assert cell.pause_button.text() == "Resume" and "Paused at" in cell.progress.format()
    kept = job.bytes_on_disk()
    assert 0 < kept < len(Q8_DATA)

    qtbot.mouseClick(cell.pause_button, LEFT)  # Resume
    qtbot.waitUntil(lambda: bool(hub.range_requests()), timeout=10_000)
    assert hub.range_requests()[-1].range_header == f"bytes={kept}-"
    qtbot.waitUntil(lambda: cell.cancel_button.isVisible(), timeout=5_000)
    qtbot.mouseClick(cell.cancel_button, LEFT)
    qtbot.waitUntil(lambda: not dialog.downloads.controller.active(), timeout=5_000)
    assert DownloadQueue().jobs() == []
    assert not list(app_paths().downloads_dir.rglob("*.part"))
    assert cell.download_button.isVisible() and cell.download_button.text() == "Download"


def test_search_the_hub_and_download_from_it(qtbot: QtBot, dialog: ModelManagerDialog, hub: FakeHub) -> None:
    hub.add_repo("someone/Tiny-Llama-GGUF", {"Tiny-Llama-Q4_K_M.gguf": Q4_DATA[:100_000]}, downloads=5)
    hub.add_repo("metaish/Llama-Gated-GGUF", {"Gated-Q4_K_M.gguf": b"x"}, gated=True, downloads=9)
    dialog.tabs.setCurrentIndex(1)
    qtbot.keyClicks(dialog.search_edit, "llama")
    qtbot.mouseClick(dialog.search_button, LEFT)
    qtbot.waitUntil(lambda: dialog.search_results.rowCount() == 2, timeout=10_000)
    assert dialog.search_results.item(0, 0).text() == "metaish/Llama-Gated-GGUF"  # type: ignore[union-attr]
    assert "token" in dialog.search_results.item(0, 2).text()  # type: ignore[union-attr]

    dialog.search_results.selectRow(1)
    qtbot.waitUntil(lambda: dialog.search_download_button.isEnabled(), timeout=10_000)
    assert dialog.search_quant.currentData() == "Q4_K_M"
    with qtbot.waitSignal(dialog.model_installed, timeout=20_000) as installed:
        qtbot.mouseClick(dialog.search_download_button, LEFT)
    assert Path(installed.args[0]).name == "Tiny-Llama-Q4_K_M.gguf"

    dialog.search_results.selectRow(0)
    qtbot.waitUntil(lambda: dialog.search_download_button.isEnabled(), timeout=10_000)
    qtbot.mouseClick(dialog.search_download_button, LEFT)
    qtbot.waitUntil(lambda: "HF_TOKEN" in dialog.notice.text(), timeout=10_000)
    assert "hf auth login" in dialog.notice.text()


def test_delete_asks_first_and_frees_the_disk(qtbot: QtBot, dialog: ModelManagerDialog) -> None:
    folder = app_paths().models_dir / "bartowski__SmolLM2-135M-Instruct-GGUF"
    folder.mkdir(parents=True)
    (folder / Q4).write_bytes(Q4_DATA)
    dialog.refresh_installed()
    row = next(
        i
        for i in range(dialog.installed_table.rowCount())
        if dialog.installed_table.item(i, 0).text() == f"{SMOL}:Q4_K_M"  # type: ignore[union-attr]
    )
    buttons = dialog.installed_table.cellWidget(row, 3)
    delete = next(b for b in buttons.findChildren(QPushButton) if b.text() == "Delete")  # type: ignore[union-attr]

    def answer(button: QMessageBox.StandardButton) -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox) and "frees 2.1 MB" in box.text()
        box.button(button).click()

    QTimer.singleShot(200, lambda: answer(QMessageBox.StandardButton.No))
    qtbot.mouseClick(delete, LEFT)
    assert (folder / Q4).exists()

    QTimer.singleShot(200, lambda: answer(QMessageBox.StandardButton.Yes))
    qtbot.mouseClick(delete, LEFT)
    assert not (folder / Q4).exists()
    assert "2.1 MB freed" in dialog.notice.text()


def test_the_window_the_manager_and_the_cli_list_the_same_models(
    qtbot: QtBot, hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import hashlib
    import json

    from app.cli import main
    from app.core import settings as settings_store

    downloaded = app_paths().models_dir / "org__A-GGUF" / "A-Q4_K_M.gguf"
    downloaded.parent.mkdir(parents=True)
    downloaded.write_bytes(b"a" * 10)
    imported = tmp_path / "elsewhere" / "Mine.gguf"
    imported.parent.mkdir()
    imported.write_bytes(b"m" * 5)
    # One model in the Hugging Face cache: the manager and the CLI list it, the window's picker does not.
    from huggingface_hub import constants

    snapshot = Path(constants.HF_HUB_CACHE) / "models--someone--Cached-GGUF" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    blob = snapshot.parents[1] / "blobs" / hashlib.sha256(b"c").hexdigest()
    blob.parent.mkdir()
    blob.write_bytes(b"c")
    (snapshot / "Cached-Q5_K_M.gguf").symlink_to(blob)
    cached = str(snapshot / "Cached-Q5_K_M.gguf")

    settings = Settings(imported_models=[str(imported)])
    settings_store.save(settings)
    assert main(["models", "installed", "--json"]) == 0
    cli = [entry["path"] for entry in json.loads(capsys.readouterr().out)]

    window = MainWindow(settings=settings, store=HistoryStore(), open_default_model=False)
    qtbot.addWidget(window)
    picker = [
        window.models.picker.itemData(i) for i in range(window.models.picker.count() - 1)
    ]  # less "Open…"

    manager = ModelManagerDialog(
        None, endpoint=hub.url, hardware=laptop(), context_size=4096, imported_models=settings.imported_models
    )
    qtbot.addWidget(manager)
    table = manager.installed_table
    listed = [table.item(i, 0).toolTip() for i in range(table.rowCount())]  # type: ignore[union-attr]
    manager.downloads.shutdown()
    window.close()

    assert cli[:3] == [str(downloaded.resolve()), cached, str(imported.resolve())]
    assert listed == cli
    assert picker == [path for path in cli if path != cached]


def window_with_the_hub(qtbot: QtBot, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> MainWindow:
    """A window (no model loaded) whose downloads come from the fake hub."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    # Built from the endpoint once, when huggingface_hub is imported: file URLs would still name the real Hub.
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    window = MainWindow(settings=Settings(), store=HistoryStore(), open_default_model=False)
    qtbot.addWidget(window)
    window.show()
    return window


def queue_rows(dialog: ModelManagerDialog) -> list[tuple[str, str, str]]:
    """The Downloads tab: each job's name, its progress bar's text and its first button."""
    rows = []
    table = dialog.queue_table
    for index in range(table.rowCount()):
        bar = table.cellWidget(index, 1)
        buttons = table.cellWidget(index, 2)
        assert isinstance(bar, QProgressBar) and buttons is not None
        first = buttons.findChildren(QPushButton)[0]
        rows.append((table.item(index, 0).text(), bar.format(), first.text()))  # type: ignore[union-attr]
    return rows


def test_downloads_are_the_windows_closing_and_reopening_the_dialog_mid_download(
    qtbot: QtBot, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.faults.throttle_bytes_per_second = 512 * 1024  # about 4 s for the 2 MB file
    window = window_with_the_hub(qtbot, hub, monkeypatch)
    controller = window.downloads.controller
    window.models.get_model(SMOL, "Q4_K_M")  # what the welcome card's "Get it" does
    first = window.models.model_manager
    assert first is not None and first.isVisible()
    qtbot.waitUntil(lambda: any(d.progress is not None for d in controller.active()), timeout=20_000)

    first.close()  # closing only hides it: the download goes on
    qtbot.wait(300)
    assert controller.active() and not first.isVisible()
    # Deleted, the dialog takes no download with it, and the window makes a new one when asked.
    with qtbot.waitSignal(first.destroyed, timeout=5_000):
        first.deleteLater()
    assert window.models.model_manager is None
    assert controller.active()

    window.models_action.trigger()  # reopened: a new dialog shows the download running
    second = window.models.model_manager
    assert second is not None and second is not first and second.isVisible()
    ((name, progress_text, button),) = queue_rows(second)
    assert name == f"{SMOL} Q4_K_M" and button == "Pause"
    assert second.tabs.tabText(2) == "Downloads (1)"
    print(f"\nreopened mid-download: {progress_text!r}")

    with qtbot.waitSignal(window.downloads.installed, timeout=60_000) as installed:
        pass
    path = Path(installed.args[0])
    assert path.read_bytes() == Q4_DATA
    qtbot.waitUntil(lambda: second.queue_table.rowCount() == 0, timeout=5_000)
    picker = window.models.picker
    assert str(path) in [picker.itemData(i) for i in range(picker.count())]  # the window's list has it
    table = second.installed_table
    listed = [table.item(i, 0).text() for i in range(table.rowCount())]  # type: ignore[union-attr]
    assert f"{SMOL}:Q4_K_M" in listed


def test_quitting_mid_download_waits_for_no_download_and_the_download_resumes_later(
    qtbot: QtBot, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.faults.throttle_bytes_per_second = 512 * 1024
    window = window_with_the_hub(qtbot, hub, monkeypatch)
    controller = window.downloads.controller
    window.models.get_model(SMOL, "Q4_K_M")
    qtbot.waitUntil(
        lambda: any(d.progress is not None and d.progress.done_bytes > 0 for d in controller.active()),
        timeout=20_000,
    )
    # Another LlamaDesk holds the list of downloads: the paused download cannot write its state until it lets
    # go, so a window that waited for its download threads would wait as long.
    queue_lock = FileLock(str(DownloadQueue().path) + ".lock")
    with queue_lock:
        started = time.perf_counter()
        window.close()
        closing = time.perf_counter() - started
        still_running = bool(controller.active())
    print(f"\nthe window closed in {closing * 1000:.0f} ms, its download still ending on its own thread")
    # Generous (a shared 2-core machine): waiting for the download would take as long as the lock is held.
    assert closing < 2.0
    assert still_running
    qtbot.waitUntil(lambda: not controller.active(), timeout=20_000)
    (job,) = DownloadQueue().jobs()
    assert job.state == STATE_PAUSED
    kept = job.bytes_on_disk()
    assert 0 < kept < len(Q4_DATA)

    # The next LlamaDesk continues from the partial.
    hub.faults.throttle_bytes_per_second = None
    result = Downloader(DownloadQueue(), endpoint=hub.url).download(job.job_id)
    assert hub.range_requests()[-1].range_header == f"bytes={kept}-"
    assert result.path.read_bytes() == Q4_DATA


def installed_paths(dialog: ModelManagerDialog) -> list[str]:
    """The Installed tab's files (each row's tooltip is its path)."""
    table = dialog.installed_table
    return [table.item(i, 0).toolTip() for i in range(table.rowCount())]  # type: ignore[union-attr]


def test_a_gguf_opened_in_the_window_is_listed_in_the_installed_tab_without_a_restart(
    qtbot: QtBot, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_path: Path
) -> None:
    import shutil

    from PySide6.QtWidgets import QFileDialog

    window = window_with_the_hub(qtbot, hub, monkeypatch)
    window.models.open_manager()
    manager = window.models.model_manager
    assert manager is not None and manager.isVisible()
    opened = tmp_path / "elsewhere" / model_path.name
    opened.parent.mkdir()
    shutil.copyfile(model_path, opened)
    assert str(opened.resolve()) not in installed_paths(manager)

    # A stand-in for the person choosing the file in the system's file dialog; the rest is "Open GGUF file…".
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", lambda *_args, **_kwargs: (str(opened), "GGUF models (*.gguf)")
    )
    window.open_action.trigger()
    qtbot.waitUntil(lambda: str(opened.resolve()) in installed_paths(manager), timeout=20_000)
    qtbot.waitUntil(lambda: window.models.bridge.model is not None, timeout=120_000)  # loaded, as asked
    picker = window.models.picker
    in_picker = [picker.itemData(i) for i in range(picker.count() - 1)]  # less "Open…"
    assert str(opened.resolve()) in in_picker
    # The manager lists the picker's models (and, besides, the Hugging Face cache's, which the picker leaves out).
    assert set(in_picker) <= set(installed_paths(manager))

    # Hidden, then shown again: it reads the inventory again, so a file that came meanwhile is there.
    manager.hide()
    later = app_paths().models_dir / "org__Later-GGUF" / "Later-Q4_K_M.gguf"
    later.parent.mkdir(parents=True)
    shutil.copyfile(model_path, later)
    window.models.open_manager()
    assert window.models.model_manager is manager
    assert str(later.resolve()) in installed_paths(manager)
    window.close()


def test_refresh_lists_a_model_file_added_to_the_models_folder(
    qtbot: QtBot, dialog: ModelManagerDialog
) -> None:
    added = app_paths().models_dir / "org__Added-GGUF" / "Added-Q4_K_M.gguf"
    added.parent.mkdir(parents=True)
    added.write_bytes(b"a" * 1024)
    assert str(added.resolve()) not in installed_paths(dialog)
    qtbot.mouseClick(dialog.refresh_button, LEFT)
    assert str(added.resolve()) in installed_paths(dialog)
    added.unlink()
    qtbot.mouseClick(dialog.refresh_button, LEFT)
    assert str(added.resolve()) not in installed_paths(dialog)


def test_the_failed_download_notice_clears_on_refresh_and_on_retry(
    qtbot: QtBot, dialog: ModelManagerDialog, hub: FakeHub
) -> None:
    hub.faults.fail_status, hub.faults.fail_count = (
        404,
        2,
    )  # the first two tries fail, the third gets the file
    failed = "was not downloaded"

    def smol_cell() -> DownloadCell:  # looked up each time: Refresh reads this computer again and may reorder
        return dialog.action_cell(dialog.row_index(SMOL))

    with qtbot.waitSignal(dialog.download_failed, timeout=30_000):
        qtbot.mouseClick(smol_cell().download_button, LEFT)
    assert failed in dialog.notice.text() and dialog.notice.isVisible()
    assert smol_cell().download_button.text() == "Retry"

    qtbot.mouseClick(dialog.refresh_button, LEFT)
    assert failed not in dialog.notice.text()
    qtbot.wait(1_000)  # the Hub's file lists come back: they do not bring the old failure back
    assert failed not in dialog.notice.text()
    assert smol_cell().download_button.text() == "Retry"  # the row still says why

    with qtbot.waitSignal(dialog.download_failed, timeout=30_000):
        qtbot.mouseClick(smol_cell().download_button, LEFT)
    assert failed in dialog.notice.text()

    with qtbot.waitSignal(dialog.model_installed, timeout=30_000):
        qtbot.mouseClick(smol_cell().download_button, LEFT)
        assert failed not in dialog.notice.text()  # cleared as the retry starts, not when it succeeds
    assert failed not in dialog.notice.text()
