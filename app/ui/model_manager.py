"""The model manager: which models run here and how fast, downloads with progress, and the installed models.

Widgets only: the menu comes from ``app.core.models.menu``, fit from ``app.core.models.fit``, speed from
``app.core.models.speed`` (the catalog table's columns from ``app.ui.model_manager_columns``), the machine from
``app.core.models.hardware``, the Hub from ``app.core.models.hub``, the installed models from
``app.core.models.inventory``, and the downloads from the window's ``app.ui.downloads.Downloads`` (its
``DownloadController`` runs, pauses and cancels them on threads of their own). The dialog only shows the
downloads: closing it stops none, and a dialog opened later shows them all. Short jobs (probe, Hub file lists,
search) run on Qt's pool through ``run_in_pool``.

The Installed tab is never a copy: it reads ``installed_models`` again each time the dialog is shown, on
Refresh, when a download finishes and when the window opens a GGUF file (``note_model_file``), so it lists
what the window's picker and ``llamadesk models installed`` list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import UserError
from app.core.models.catalog import CatalogEntry, load_catalog
from app.core.models.downloads.downloader import Downloader
from app.core.models.downloads.progress import DownloadProgress
from app.core.models.downloads.queue import STATE_DOWNLOADING, STATE_FAILED, STATE_PAUSED, DownloadJob
from app.core.models.fit import measured_speeds
from app.core.models.hardware import HardwareInfo, probe_hardware
from app.core.models.hub import HubModel, RepoListing, fetch_listing, load_listings, search_hub
from app.core.models.inventory import InstalledModel, installed_models, remove_installed
from app.core.models.menu import MenuOption, MenuRow, build_menu
from app.core.units import human_bytes
from app.ui.background import run_in_pool
from app.ui.downloads import Downloads
from app.ui.model_manager_columns import (
    COLUMN_ACTION,
    COLUMN_MODEL,
    COLUMN_QUANT,
    HEADERS,
    LEGEND,
    option_cells,
)

log = logging.getLogger(__name__)

# Beside the button of a model whose download failed; the sentence is in its tooltip.
NOT_DOWNLOADED = "Not downloaded"


class DownloadCell(QWidget):
    """The catalog's last column: a Download button that turns into a progress bar with Pause and Cancel."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 0, 2, 0)
        self.download_button = QPushButton("Download")
        self.use_button = QPushButton("Use")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Cancel")
        self.problem = QLabel()  # why the last try failed, beside its button (the sentence in the tooltip)
        self.problem.setStyleSheet("color: #b3261e;")
        for widget in (
            self.problem,
            self.download_button,
            self.use_button,
            self.progress,
            self.pause_button,
            self.cancel_button,
        ):
            layout.addWidget(widget)
        self.show_idle(installed=False)

    def _show(self, *visible: QWidget) -> None:
        for widget in (
            self.problem,
            self.download_button,
            self.use_button,
            self.progress,
            self.pause_button,
            self.cancel_button,
        ):
            widget.setVisible(widget in visible)

    def show_idle(self, installed: bool, resumable: bool = False) -> None:
        self.download_button.setText("Resume" if resumable else "Download")
        self.download_button.setEnabled(True)
        self._show(self.use_button if installed else self.download_button)

    def show_failed(self, short: str, sentence: str, resumable: bool = False) -> None:
        self.show_idle(installed=False, resumable=resumable)
        self.download_button.setText("Retry")
        self.problem.setText(short)
        for widget in (self.problem, self.download_button):
            widget.setToolTip(sentence)
        self._show(self.problem, self.download_button)

    def show_preparing(self) -> None:
        self.download_button.setText("Preparing...")
        self.download_button.setEnabled(False)
        self._show(self.download_button)

    def show_progress(self, progress: DownloadProgress) -> None:
        self.progress.setValue(int(progress.fraction * 1000))
        self.progress.setFormat(progress.describe())
        self.pause_button.setText("Pause")
        self._show(self.progress, self.pause_button, self.cancel_button)

    def show_paused(self, done: int, total: int) -> None:
        self.progress.setValue(int(done / total * 1000) if total else 0)
        self.progress.setFormat(f"Paused at {human_bytes(done)} of {human_bytes(total)}")
        self.pause_button.setText("Resume")
        self._show(self.progress, self.pause_button, self.cancel_button)


class ModelManagerDialog(QDialog):
    """The model menu for this machine, the download queue and the installed models.

    ``ModelManagerDialog(parent, downloads=window_downloads, context_size=settings.context_size,
    loaded_model_bytes=..., imported_models=lambda: settings.imported_models)``; the window keeps it (closing
    only hides it). ``imported_models`` is a list, or a function giving the current one (so files opened
    after the dialog was made are listed). ``set_context(context_size, loaded_model_bytes)`` updates the
    fit labels when a model is loaded or the context size changes.

    Keyword arguments: ``downloads`` are the window's (without it the dialog makes its own, for ``endpoint``,
    a local Hub in tests, or with ``downloader``, a configured ``Downloader``); ``hardware`` skips the probe.

    Signals:
        model_installed(str): the path of a model just downloaded and verified (the first part of a split one).
        model_chosen(str): the person pressed "Use" on an installed model.
        download_failed(str, str): a download of this repository could not start or stopped; the sentence.
    """

    model_installed = Signal(str)
    model_chosen = Signal(str)
    download_failed = Signal(str, str)

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        context_size: int = 4096,
        loaded_model_bytes: int = 0,
        imported_models: Sequence[str] | Callable[[], Sequence[str]] = (),
        downloads: Downloads | None = None,
        endpoint: str | None = None,
        hardware: HardwareInfo | None = None,
        downloader: Downloader | None = None,
        entries: Sequence[CatalogEntry] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(1100, 640)
        self._context_size = context_size
        self._reclaimable = loaded_model_bytes
        # Read again at every refresh of the Installed tab: the window adds a file each time one is opened.
        if callable(imported_models):
            self._imported = imported_models
        else:
            fixed = tuple(imported_models)
            self._imported = lambda: fixed
        self._entries = list(entries) if entries is not None else load_catalog()
        self._hardware = hardware
        self._listings: dict[str, RepoListing] = {}
        self._rows: list[MenuRow] = []
        self.downloads = downloads or Downloads(self, endpoint=endpoint, downloader=downloader)
        self._control = self.downloads.controller
        self._chosen_quant: dict[str, str] = {}  # repo id -> the quantization the person picked
        # Repository id (lower case) -> why its download failed: those standing when the dialog opened, then
        # each as it is told (so a row never says it before the notice above the list does).
        self._failures = self._control.failures()
        self._failure_noticed = False  # a failed download is told above the list; listings keep it
        self._search_listing: RepoListing | None = None
        self._build()
        self.downloads.progress.connect(self._on_progress)
        self.downloads.changed.connect(self._on_downloads_changed)
        self.downloads.installed.connect(self._on_installed)
        self.downloads.failed.connect(self._on_failed)
        if self._hardware is None:
            run_in_pool(lambda: probe_hardware(), self._on_hardware, self._on_background_error)
        self._refresh_menu()
        self.refresh_listings()
        self.refresh_queue()
        self.refresh_installed()

    # -- layout ---------------------------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.hardware_label = QLabel("Looking at this computer...")
        self.hardware_label.setWordWrap(True)
        top.addWidget(self.hardware_label, 1)
        top.addWidget(QLabel("Plan for a context of"))
        self.context_spin = QSpinBox()
        self.context_spin.setRange(512, 131072)
        self.context_spin.setSingleStep(1024)
        self.context_spin.setSuffix(" tokens")
        self.context_spin.setValue(self._context_size)
        self.context_spin.setAccessibleName("Context size to plan for")
        self.context_spin.valueChanged.connect(self._on_context_changed)
        top.addWidget(self.context_spin)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip(
            "Read the free memory and the installed models again, and ask the Hub for current file lists"
        )
        self.refresh_button.clicked.connect(self._on_refresh)
        top.addWidget(self.refresh_button)
        layout.addLayout(top)
        self.notice = QLabel("")
        self.notice.setWordWrap(True)
        self.notice.setVisible(False)
        layout.addWidget(self.notice)

        self.tabs = QTabWidget()
        layout.addWidget(self.tabs, 1)
        self.tabs.addTab(self._build_catalog(), "Recommended models")
        self.tabs.addTab(self._build_search(), "Search the Hub")
        self.tabs.addTab(self._build_queue(), "Downloads")
        self.tabs.addTab(self._build_installed(), "Installed")

    def _table(self, headers: list[str]) -> QTableWidget:
        table = QTableWidget(0, len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.verticalHeader().setVisible(False)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        return table

    def _build_catalog(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        self.catalog_table = self._table(HEADERS)
        self.catalog_table.setAccessibleName("Models for this computer")
        layout.addWidget(self.catalog_table)
        self.legend = QLabel(LEGEND)
        self.legend.setWordWrap(True)
        layout.addWidget(self.legend)
        return page

    def _build_search(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        row = QHBoxLayout()
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search GGUF models on the Hugging Face Hub, e.g. 'llama 3.2'")
        self.search_edit.setAccessibleName("Search the Hub")
        self.search_edit.returnPressed.connect(self.search)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.search)
        row.addWidget(self.search_edit, 1)
        row.addWidget(self.search_button)
        layout.addLayout(row)
        self.search_results = self._table(["Repository", "Downloads", "Note"])
        self.search_results.itemSelectionChanged.connect(self._on_search_selected)
        layout.addWidget(self.search_results, 1)
        files = QHBoxLayout()
        self.search_quant = QComboBox()
        self.search_quant.setAccessibleName("File to download")
        self.search_quant.setEnabled(False)
        self.search_download_button = QPushButton("Download")
        self.search_download_button.setEnabled(False)
        self.search_download_button.clicked.connect(self._on_search_download)
        files.addWidget(self.search_quant, 1)
        files.addWidget(self.search_download_button)
        layout.addLayout(files)
        self.search_status = QLabel("")
        self.search_status.setWordWrap(True)
        layout.addWidget(self.search_status)
        return page

    def _build_queue(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        self.queue_table = self._table(["Model", "Progress", ""])
        self.queue_table.setAccessibleName("Downloads")
        layout.addWidget(self.queue_table)
        return page

    def _build_installed(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        self.installed_table = self._table(["Model", "Size", "Source", ""])
        self.installed_table.setAccessibleName("Installed models")
        layout.addWidget(self.installed_table)
        return page

    # -- public ---------------------------------------------------------------------------------------------

    def set_context(self, context_size: int, loaded_model_bytes: int = 0) -> None:
        """A model was loaded or the context size changed: the labels follow."""
        self._reclaimable = loaded_model_bytes
        if context_size != self.context_spin.value():
            self.context_spin.setValue(context_size)  # refreshes through valueChanged
        else:
            self._refresh_menu()

    def refresh_listings(self) -> None:
        """Ask the Hub for each catalog repository's files (cached ones are used until a day old)."""
        repo_ids = [entry.repo_id for entry in self._entries]
        endpoint = self._control.endpoint
        run_in_pool(
            lambda: load_listings(repo_ids, endpoint=endpoint), self._on_listings, self._on_background_error
        )

    def menu_rows(self) -> list[MenuRow]:
        return list(self._rows)

    # -- the menu -------------------------------------------------------------------------------------------

    def _on_hardware(self, hardware: HardwareInfo) -> None:
        self._hardware = hardware
        self._refresh_menu()

    def _on_listings(self, result: Any) -> None:
        self._listings.update(result.listings)
        if not self._failure_noticed:
            self._show_notice(result.problem)
        self._refresh_menu()

    def _on_refresh(self) -> None:
        self._clear_failure_notice()  # the person has seen it; each failed row still says why
        self.refresh_installed()
        run_in_pool(
            lambda: probe_hardware(measure_bandwidth=False), self._on_hardware, self._on_background_error
        )
        repo_ids = [entry.repo_id for entry in self._entries]
        endpoint = self._control.endpoint
        run_in_pool(
            lambda: load_listings(repo_ids, refresh=True, endpoint=endpoint),
            self._on_listings,
            self._on_background_error,
        )

    def _on_context_changed(self, value: int) -> None:
        self._context_size = value
        self._refresh_menu()

    def _show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    def _on_background_error(self, error: BaseException) -> None:
        self._show_notice(str(error) if isinstance(error, UserError) else f"Something went wrong: {error}")

    def _refresh_menu(self) -> None:
        hardware = self._hardware
        if hardware is None:
            return
        self.hardware_label.setText(hardware.summary())
        self.hardware_label.setToolTip("\n".join(hardware.summary_lines()))
        self._rows = build_menu(
            hardware,
            self._context_size,
            entries=self._entries,
            listings=self._listings,
            speeds=measured_speeds(),
            reclaimable=self._reclaimable,
        )
        table = self.catalog_table
        table.setRowCount(len(self._rows))
        for index, row in enumerate(self._rows):
            name = QTableWidgetItem(f"{row.entry.name}  ({row.entry.parameters_text})")
            name.setToolTip(
                f"{row.entry.description}\n{row.entry.repo_id}\nLicense: {row.entry.license}\n"
                f"Modes: {', '.join(row.entry.modes)}\n{row.recommendation.advice}"
            )
            name.setData(Qt.ItemDataRole.UserRole, row.entry.repo_id)
            table.setItem(index, COLUMN_MODEL, name)
            combo = QComboBox()
            combo.setAccessibleName(f"Quantization of {row.entry.name}")
            for option in row.options:
                recommended = option.quant == row.recommendation.quant
                combo.addItem(f"{option.quant} (recommended)" if recommended else option.quant, option.quant)
            headline = row.headline
            chosen = self._chosen_quant.get(row.entry.repo_id)
            if chosen is not None and combo.findData(chosen) >= 0:
                combo.setCurrentIndex(combo.findData(chosen))
            elif headline is not None:
                combo.setCurrentIndex(max(0, combo.findData(headline.quant)))
            combo.currentIndexChanged.connect(lambda _i, r=index: self._on_quant_chosen(r))
            table.setCellWidget(index, COLUMN_QUANT, combo)
            cell = DownloadCell()
            cell.download_button.clicked.connect(lambda _c=False, r=index: self._on_catalog_download(r))
            cell.use_button.clicked.connect(lambda _c=False, r=index: self._on_catalog_use(r))
            cell.pause_button.clicked.connect(lambda _c=False, r=index: self._on_catalog_pause(r))
            cell.cancel_button.clicked.connect(lambda _c=False, r=index: self._on_catalog_cancel(r))
            table.setCellWidget(index, COLUMN_ACTION, cell)
            self._show_option(index)
        table.resizeColumnsToContents()
        table.horizontalHeader().setSectionResizeMode(COLUMN_MODEL, QHeaderView.ResizeMode.Stretch)

    def selected_option(self, row_index: int) -> MenuOption | None:
        combo = self.catalog_table.cellWidget(row_index, COLUMN_QUANT)
        if not isinstance(combo, QComboBox) or row_index >= len(self._rows):
            return None
        return self._rows[row_index].option(combo.currentData())

    def action_cell(self, row_index: int) -> DownloadCell:
        cell = self.catalog_table.cellWidget(row_index, COLUMN_ACTION)
        assert isinstance(cell, DownloadCell)
        return cell

    def row_index(self, repo_id: str) -> int:
        return next(i for i, row in enumerate(self._rows) if row.entry.repo_id == repo_id)

    def _on_quant_chosen(self, row_index: int) -> None:
        option = self.selected_option(row_index)
        if option is not None:
            # Kept across refreshes (a download finishing, the context changing) so the choice sticks.
            self._chosen_quant[self._rows[row_index].entry.repo_id] = option.quant
        self._show_option(row_index)

    def _show_option(self, row_index: int) -> None:
        option = self.selected_option(row_index)
        if option is None:
            return
        for column, item in option_cells(option, self._rows[row_index].context_size).items():
            self.catalog_table.setItem(row_index, column, item)
        self._update_cell(row_index)

    def _job_for(self, repo_id: str, quant: str) -> DownloadJob | None:
        return self._control.find(repo_id, quant)

    def _update_cell(self, row_index: int) -> None:
        option = self.selected_option(row_index)
        if option is None:
            return
        cell = self.action_cell(row_index)
        repo_id = self._rows[row_index].entry.repo_id
        active = self._control.active_for(repo_id, option.quant)
        job = self._job_for(repo_id, option.quant) if active is None else None
        if active is not None:
            self._failures.pop(repo_id.lower(), None)  # started again (here, or by the welcome card)
        failure = self._failures.get(repo_id.lower())
        if active is not None:
            if active.progress is not None:
                cell.show_progress(active.progress)
            else:
                cell.show_preparing()
        elif job is not None and job.state == STATE_PAUSED:
            cell.show_paused(job.bytes_on_disk(), job.total_size)
        elif failure is not None and option.installed is None:
            cell.show_failed(NOT_DOWNLOADED, failure, resumable=job is not None)
        else:
            cell.show_idle(installed=option.installed is not None, resumable=job is not None)

    # -- downloads ------------------------------------------------------------------------------------------

    def _on_catalog_download(self, row_index: int) -> None:
        option = self.selected_option(row_index)
        if option is None:
            return
        self.action_cell(row_index).show_preparing()
        self.start_download(self._rows[row_index].entry.repo_id, option.quant)

    def _on_catalog_use(self, row_index: int) -> None:
        option = self.selected_option(row_index)
        if option is not None and option.installed is not None:
            self.model_chosen.emit(str(option.installed))

    def _catalog_job_id(self, row_index: int) -> str | None:
        option = self.selected_option(row_index)
        if option is None:
            return None
        repo_id = self._rows[row_index].entry.repo_id
        active = self._control.active_for(repo_id, option.quant)
        if active is not None:
            return active.job_id or None  # still being planned: nothing to pause yet
        job = self._job_for(repo_id, option.quant)
        return job.job_id if job is not None else None

    def _on_catalog_pause(self, row_index: int) -> None:
        job_id = self._catalog_job_id(row_index)
        if job_id is not None:
            self.toggle_pause(job_id)

    def _on_catalog_cancel(self, row_index: int) -> None:
        job_id = self._catalog_job_id(row_index)
        if job_id is not None:
            self.cancel_download(job_id)

    def start_download(self, repo_id: str, quant: str | None, filename: str | None = None) -> None:
        """Resume the unfinished download of this model, or plan a new one and start it (on a thread)."""
        self._clear_failure_notice()
        self._failures.pop(repo_id.lower(), None)
        self._control.start(repo_id, quant, filename, context_size=self._context_size)

    def toggle_pause(self, job_id: str) -> None:
        if not self._control.running(job_id):
            self._clear_failure_notice()
        self._control.toggle_pause(job_id)

    def cancel_download(self, job_id: str) -> None:
        self._control.cancel(job_id)

    def _clear_failure_notice(self) -> None:
        if self._failure_noticed:
            self._failure_noticed = False
            self._show_notice("")

    def _on_progress(self, progress: DownloadProgress) -> None:
        for row_index in range(self.queue_table.rowCount()):
            item = self.queue_table.item(row_index, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == progress.job_id:
                bar = self.queue_table.cellWidget(row_index, 1)
                if isinstance(bar, QProgressBar):
                    bar.setValue(int(progress.fraction * 1000))
                    bar.setFormat(progress.describe())
        active = next((d for d in self._control.active() if d.job_id == progress.job_id), None)
        if active is None:
            return  # ended meanwhile: its end refreshes the rows
        for row_index, row in enumerate(self._rows):
            option = self.selected_option(row_index)
            if option is not None and active.is_model(row.entry.repo_id, option.quant):
                self.action_cell(row_index).show_progress(progress)

    def _on_downloads_changed(self) -> None:
        self.refresh_queue()
        self._refresh_cells()

    def _on_installed(self, path: str) -> None:
        self.model_installed.emit(path)
        self.refresh_installed()
        self._refresh_menu()

    def _on_failed(self, repo_id: str, sentence: str) -> None:
        """Say why above the list (the row says it beside its button); tell whoever started the download."""
        name = next((e.name for e in self._entries if e.repo_id == repo_id), repo_id)
        self._failures[repo_id.lower()] = sentence
        self._show_notice(f"{name} was not downloaded. {sentence}")
        self._failure_noticed = True
        self._refresh_cells()
        self.download_failed.emit(repo_id, sentence)

    def show_model(self, repo_id: str, quant: str) -> None:
        """Bring this model's row into view, selected at this quantization (kept for a menu still to come)."""
        self.tabs.setCurrentIndex(0)
        self._chosen_quant[repo_id] = quant
        self._refresh_menu()
        if any(row.entry.repo_id == repo_id for row in self._rows):
            self.catalog_table.selectRow(self.row_index(repo_id))
            self.catalog_table.scrollTo(self.catalog_table.currentIndex())

    def _refresh_cells(self) -> None:
        for row_index in range(len(self._rows)):
            self._update_cell(row_index)

    def refresh_queue(self) -> None:
        jobs = self._control.unfinished()
        table = self.queue_table
        table.setRowCount(len(jobs))
        for index, job in enumerate(jobs):
            item = QTableWidgetItem(job.name)
            item.setData(Qt.ItemDataRole.UserRole, job.job_id)
            item.setToolTip(job.message)
            table.setItem(index, 0, item)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            running = self._control.running(job.job_id)
            progress = self._control.progress(job.job_id)
            done = progress.done_bytes if progress is not None else job.bytes_on_disk()
            bar.setValue(int(done / job.total_size * 1000) if job.total_size else 0)
            if progress is not None:
                bar.setFormat(progress.describe())
            elif job.state == STATE_FAILED:
                bar.setFormat(f"Stopped at {human_bytes(done)}: {job.message}")
            else:
                state = "Starting" if running or job.state == STATE_DOWNLOADING else job.state.capitalize()
                bar.setFormat(f"{state}: {human_bytes(done)} of {human_bytes(job.total_size)}")
            table.setCellWidget(index, 1, bar)
            buttons = QWidget()
            row = QHBoxLayout(buttons)
            row.setContentsMargins(2, 0, 2, 0)
            pause = QPushButton("Pause" if running else "Resume")
            pause.clicked.connect(lambda _c=False, j=job.job_id: self.toggle_pause(j))
            cancel = QPushButton("Cancel")
            cancel.clicked.connect(lambda _c=False, j=job.job_id: self.cancel_download(j))
            row.addWidget(pause)
            row.addWidget(cancel)
            table.setCellWidget(index, 2, buttons)
        self.tabs.setTabText(2, f"Downloads ({len(jobs)})" if jobs else "Downloads")

    # -- search ---------------------------------------------------------------------------------------------

    def search(self) -> None:
        text = self.search_edit.text().strip()
        if not text:
            return
        self.search_status.setText(f"Searching the Hub for '{text}'...")
        self.search_button.setEnabled(False)
        endpoint = self._control.endpoint

        def failed(error: BaseException) -> None:
            self.search_button.setEnabled(True)
            self.search_status.setText(
                str(error) if isinstance(error, UserError) else f"Search failed: {error}"
            )

        run_in_pool(lambda: search_hub(text, endpoint=endpoint), self._on_search_results, failed)

    def _on_search_results(self, found: list[HubModel]) -> None:
        self.search_button.setEnabled(True)
        table = self.search_results
        table.setRowCount(len(found))
        for index, model in enumerate(found):
            item = QTableWidgetItem(model.repo_id)
            item.setData(Qt.ItemDataRole.UserRole, model.repo_id)
            table.setItem(index, 0, item)
            table.setItem(index, 1, QTableWidgetItem(f"{model.downloads:,}"))
            note = "gated: needs a Hugging Face token (HF_TOKEN or `hf auth login`)" if model.gated else ""
            table.setItem(index, 2, QTableWidgetItem(note))
        self.search_status.setText(
            f"{len(found)} repositories found; choose one to see its files." if found else "Nothing found."
        )

    def _on_search_selected(self) -> None:
        items = self.search_results.selectedItems()
        first = self.search_results.item(items[0].row(), 0) if items else None
        if first is None:
            return
        repo_id = str(first.data(Qt.ItemDataRole.UserRole))
        self.search_quant.clear()
        self.search_quant.setEnabled(False)
        self.search_download_button.setEnabled(False)
        self.search_status.setText(f"Reading the files of {repo_id}...")
        endpoint = self._control.endpoint

        def failed(error: BaseException) -> None:
            self.search_status.setText(str(error) if isinstance(error, UserError) else f"Failed: {error}")

        run_in_pool(lambda: fetch_listing(repo_id, endpoint=endpoint), self._on_search_listing, failed)

    def _on_search_listing(self, listing: RepoListing) -> None:
        self._search_listing = listing
        self.search_quant.clear()
        available = self._hardware.available_ram if self._hardware is not None else None
        for option in listing.options:
            # No architecture figures for an arbitrary repository: the weights alone are a lower bound.
            fits = (
                "" if available is None else (" (fits)" if option.size * 1.2 < available else " (too large)")
            )
            self.search_quant.addItem(
                f"{option.display_name}, {human_bytes(option.size)}{fits}", option.quant
            )
        has_files = bool(listing.options)
        self.search_quant.setEnabled(has_files)
        self.search_download_button.setEnabled(has_files)
        self.search_status.setText(
            f"{listing.repo_id}: {len(listing.options)} GGUF models."
            if has_files
            else f"{listing.repo_id} has no GGUF model files."
        )

    def _on_search_download(self) -> None:
        listing = self._search_listing
        quant = self.search_quant.currentData()
        if listing is None or quant is None:
            return
        self.search_status.setText(f"Downloading {listing.repo_id} {quant}; progress is under Downloads.")
        self.start_download(listing.repo_id, str(quant))

    # -- installed ------------------------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        self.refresh_installed()  # files may have come or gone while the dialog was hidden
        super().showEvent(event)

    @Slot(str)
    def note_model_file(self, _path: str) -> None:
        """The window opened (and remembered) a model file: the Installed tab lists it."""
        self.refresh_installed()

    def refresh_installed(self) -> None:
        """List the one inventory as it is now (``app.core.models.inventory.installed_models``)."""
        models = installed_models(self._imported())
        table = self.installed_table
        table.setRowCount(len(models))
        for index, model in enumerate(models):
            item = QTableWidgetItem(model.id)
            item.setToolTip(str(model.path))
            table.setItem(index, 0, item)
            table.setItem(index, 1, QTableWidgetItem(human_bytes(model.size)))
            table.setItem(index, 2, QTableWidgetItem(model.source))
            buttons = QWidget()
            row = QHBoxLayout(buttons)
            row.setContentsMargins(2, 0, 2, 0)
            use = QPushButton("Use")
            use.clicked.connect(lambda _c=False, p=model.path: self.model_chosen.emit(str(p)))
            row.addWidget(use)
            if model.removable:
                delete = QPushButton("Delete")
                delete.setAccessibleName(f"Delete {model.id}")
                delete.clicked.connect(lambda _c=False, m=model: self.delete_model(m))
                row.addWidget(delete)
            table.setCellWidget(index, 3, buttons)

    def delete_model(self, model: InstalledModel) -> None:
        """Ask first; then delete every part and say how much was freed."""
        answer = QMessageBox.question(
            self,
            "Delete model",
            f"Delete {model.id}? This frees {human_bytes(model.size)}; downloading it again takes time.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            freed = remove_installed(model)
        except (UserError, OSError) as exc:
            self._show_notice(str(exc))
            return
        self._show_notice(f"Deleted {model.id}; {human_bytes(freed)} freed.")
        self.refresh_installed()
        self._refresh_menu()
