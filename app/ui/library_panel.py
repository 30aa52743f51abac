"""The Library panel: the folders a person keeps, indexed once and kept current, and which of them the
conversation shown answers from.

Like GPT4All's LocalDocs, a library is ticked per conversation beside the chat (the panel is a dock at the
window's right, shown and hidden with Library in the toolbar), and the choice is kept with the conversation. Like LM
Studio's, progress and problems are shown where the files are added, file by file, with a sentence each.

Nothing here blocks the GUI thread on the library: indexing runs on its own thread with its own database
connection (``IndexRun``), and every read, removal and search runs on the library thread (``LibraryThread``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.library.database import LibraryDatabase
from app.core.library.indexing import (
    IndexProgress,
    IndexReport,
    LibrarySummary,
    list_libraries,
    remove_library,
)
from app.core.library.search import LibraryFile, library_files
from app.core.llm.activity import EngineActivity
from app.core.models.inventory import installed_embedding_model
from app.core.units import counted, human_duration
from app.ui.downloads import Downloads
from app.ui.embedding_download import RecommendedEmbeddingModel
from app.ui.library_jobs import IndexRequest, IndexRun, LibraryThread

log = logging.getLogger(__name__)

WORDS_ONLY_NOTE = (
    '"{name}" has no embedding model, so it is searched by words alone (exact names and numbers, not the same '
    "thing said in other words). To search by meaning too, add its folder again with an embedding model: the "
    "add form offers the recommended one."
)
NAME_COLUMN = 0


@dataclass(frozen=True)
class LibraryListing:
    """What the panel shows: every library, and the files of the one selected."""

    libraries: list[LibrarySummary]
    selected: str | None
    files: list[LibraryFile]


def library_details(library: LibrarySummary) -> str:
    """The second line of a library's row: "24 files · 48 passages · 1 problem · words + meaning"."""
    parts = [counted(library.files, "file"), counted(library.passages, "passage")]
    if library.problems:
        parts.append(counted(library.problems, "problem"))
    parts.append("words + meaning" if library.embedding_model else "words only")
    return " · ".join(parts)


class LibraryPanel(QWidget):
    """Signals:
    chosen_changed(list): the person ticked or unticked libraries for the conversation shown (their names).
    message(str): a sentence for the window's banner.
    changed(): a library was indexed or removed (its passages are read afresh).
    """

    chosen_changed = Signal(list)
    message = Signal(str)
    changed = Signal()

    def __init__(
        self,
        thread: LibraryThread,
        db_path: Path,
        parent: QWidget | None = None,
        *,
        downloads: Downloads | None = None,
        engine_activity: EngineActivity | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine_activity = engine_activity  # indexing waits while the engine answers
        self.downloads = downloads  # the window's: where the recommended embedding model is fetched
        self.setObjectName("libraryPanel")
        self.setAcceptDrops(True)
        self.library_thread = thread
        self.db_path = db_path
        self.libraries: list[LibrarySummary] = []
        self.loaded = False  # the libraries have been read once
        self.chosen: list[str] = []  # the libraries the conversation shown uses
        self.run: IndexRun | None = None
        self.queue: list[IndexRequest] = []
        self.last_report: IndexReport | None = None
        self._noted_words_only: set[str] = set()
        self._showing_choice = False  # ticks set by the program, not the person
        self._adding: list[Path] = []  # the folders of the add form
        self._build()
        self.refresh()

    # -- layout ----------------------------------------------------------------------------------------------

    def _build(self) -> None:
        column = QVBoxLayout(self)
        column.setContentsMargins(8, 8, 8, 8)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add folder…")
        self.add_button.setToolTip("Index a folder of documents (or drop folders here)")
        self.add_button.clicked.connect(self.choose_folder)
        self.update_button = QPushButton("Update")
        self.update_button.setToolTip("Read the selected library's new and changed files again")
        self.update_button.clicked.connect(self.update_selected)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Forget the selected library (its files stay where they are)")
        self.remove_button.clicked.connect(self.confirm_remove)
        for button in (self.add_button, self.update_button, self.remove_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        column.addLayout(buttons)

        self.hint = QLabel("Tick the libraries this conversation answers from.")
        self.hint.setObjectName("messageStats")
        self.hint.setWordWrap(True)
        column.addWidget(self.hint)
        self.list = QTreeWidget()
        self.list.setAccessibleName("Libraries")
        self.list.setRootIsDecorated(False)
        # One column of two lines a library (its name; its files, passages, problems and how it is searched):
        # in a dock beside the chat, five columns left its name a few letters wide.
        self.list.setHeaderHidden(True)
        self.list.itemChanged.connect(self._on_item_changed)
        self.list.currentItemChanged.connect(lambda *_: self._load_files())
        column.addWidget(self.list, 2)

        self.add_form = self._build_add_form()
        column.addWidget(self.add_form)
        self.progress_box = self._build_progress()
        column.addWidget(self.progress_box)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note.hide()
        column.addWidget(self.note)

        self.files_title = QLabel()
        column.addWidget(self.files_title)
        self.files = QTreeWidget()
        self.files.setAccessibleName("Files of the selected library")
        self.files.setRootIsDecorated(False)
        self.files.setWordWrap(True)
        self.files.setHeaderLabels(["File", "Passages, or problem"])
        self.files.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.files.header().resizeSection(0, 160)
        column.addWidget(self.files, 3)
        self._update_buttons()

    def _build_add_form(self) -> QFrame:
        form = QFrame()
        form.setObjectName("libraryAddForm")
        form.setFrameShape(QFrame.Shape.StyledPanel)
        rows = QVBoxLayout(form)
        self.folders_label = QLabel()
        self.folders_label.setWordWrap(True)
        rows.addWidget(self.folders_label)
        name_row = QHBoxLayout()
        name_row.addWidget(QLabel("Library:"))
        self.name_box = QComboBox()
        self.name_box.setEditable(True)
        self.name_box.setAccessibleName("Library name")
        self.name_box.setToolTip("A new name starts a library; an existing one adds the folders to it")
        name_row.addWidget(self.name_box, 1)
        rows.addLayout(name_row)
        model_row = QHBoxLayout()
        self.model_button = QPushButton("Embedding model (GGUF)…")
        self.model_button.setToolTip("A GGUF embedding model, to search by meaning as well as by words")
        self.model_button.clicked.connect(self.choose_embedding_model)
        self.clear_model_button = QPushButton("None")
        self.clear_model_button.setToolTip("Search this library by words alone")
        self.clear_model_button.clicked.connect(lambda: self.set_embedding_model(None))
        model_row.addWidget(self.model_button)
        model_row.addWidget(self.clear_model_button)
        model_row.addStretch(1)
        rows.addLayout(model_row)
        self.recommended_model: RecommendedEmbeddingModel | None = None
        if self.downloads is not None:
            self.recommended_model = RecommendedEmbeddingModel(self.downloads)
            self.recommended_model.installed.connect(self._on_recommended_installed)
            rows.addWidget(self.recommended_model)
        self.model_label = QLabel()
        self.model_label.setObjectName("messageStats")
        self.model_label.setWordWrap(True)
        rows.addWidget(self.model_label)
        actions = QHBoxLayout()
        actions.addStretch(1)
        self.close_form_button = QPushButton("Cancel")
        self.close_form_button.clicked.connect(self.close_add_form)
        self.index_button = QPushButton("Index")
        self.index_button.setDefault(True)
        self.index_button.clicked.connect(self.index_added)
        actions.addWidget(self.close_form_button)
        actions.addWidget(self.index_button)
        rows.addLayout(actions)
        self.embedding_model: Path | None = None
        form.hide()
        return form

    def _build_progress(self) -> QFrame:
        box = QFrame()
        rows = QVBoxLayout(box)
        rows.setContentsMargins(0, 0, 0, 0)
        self.progress_label = QLabel()
        self.progress_label.setWordWrap(True)
        self.progress_label.setAccessibleName("Indexing progress")
        rows.addWidget(self.progress_label)
        bar_row = QHBoxLayout()
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop indexing; the files indexed so far are kept, and Update goes on")
        self.cancel_button.clicked.connect(self.cancel_indexing)
        bar_row.addWidget(self.progress_bar, 1)
        bar_row.addWidget(self.cancel_button)
        rows.addLayout(bar_row)
        box.hide()
        return box

    # -- the list ----------------------------------------------------------------------------------------------

    def _rows(self) -> list[QTreeWidgetItem]:
        items = (self.list.topLevelItem(number) for number in range(self.list.topLevelItemCount()))
        return [item for item in items if item is not None]

    def selected_name(self) -> str | None:
        item = self.list.currentItem()
        return item.data(NAME_COLUMN, Qt.ItemDataRole.UserRole) if item is not None else None

    def refresh(self) -> None:
        """Read the libraries (and the selected one's files) on the library thread, then show them."""
        selected = self.selected_name()

        def read(db: LibraryDatabase) -> LibraryListing:
            libraries = list_libraries(db)
            names = [library.name for library in libraries]
            chosen = selected if selected in names else (names[0] if names else None)
            return LibraryListing(libraries, chosen, library_files(db, chosen) if chosen else [])

        self.library_thread.call(read, self._show_listing, self._say, owner=self)

    def _show_listing(self, listing: LibraryListing) -> None:
        if self.library_thread.notice:
            self._say(self.library_thread.notice)
            self.library_thread.notice = ""
        self.libraries = listing.libraries
        self.loaded = True
        self._showing_choice = True
        try:
            self.list.clear()
            for library in listing.libraries:
                item = QTreeWidgetItem([f"{library.name}\n{library_details(library)}"])
                item.setData(NAME_COLUMN, Qt.ItemDataRole.UserRole, library.name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(
                    NAME_COLUMN,
                    Qt.CheckState.Checked if library.name in self.chosen else Qt.CheckState.Unchecked,
                )
                model = library.embedding_model or "no embedding model: searched by words alone"
                item.setToolTip(NAME_COLUMN, "\n".join([*library.roots, f"Embedding model: {model}"]))
                self.list.addTopLevelItem(item)
                if library.name == listing.selected:
                    self.list.setCurrentItem(item)
        finally:
            self._showing_choice = False
        self._show_hint()
        self._show_files(listing.selected, listing.files)
        self._update_buttons()

    def _load_files(self) -> None:
        name = self.selected_name()
        self._update_buttons()
        if name is None:
            self._show_files(None, [])
            return
        self.library_thread.call(
            lambda db: library_files(db, name),
            lambda files: self._show_files(name, files) if self.selected_name() == name else None,
            self._say,
            owner=self,
        )

    def _show_files(self, name: str | None, files: list[LibraryFile]) -> None:
        self.files.clear()
        self.files_title.setText(f"Files of {name}" if name else "")
        self.files.setVisible(name is not None)
        for file in files:
            detail = file.problem or counted(file.passages, "passage")
            item = QTreeWidgetItem([Path(file.path).name, detail])
            item.setToolTip(0, file.path)
            item.setToolTip(1, detail)
            item.setData(1, Qt.ItemDataRole.UserRole, file.problem)
            if file.problem:
                item.setForeground(1, Qt.GlobalColor.darkRed)
            self.files.addTopLevelItem(item)

    def problem_sentences(self) -> list[str]:
        """The sentences of the files listed that could not be read."""
        items = (self.files.topLevelItem(number) for number in range(self.files.topLevelItemCount()))
        return [
            problem
            for item in items
            if item is not None and (problem := item.data(1, Qt.ItemDataRole.UserRole))
        ]

    def _update_buttons(self) -> None:
        has_selection = self.selected_name() is not None
        self.update_button.setEnabled(has_selection)
        self.remove_button.setEnabled(has_selection and not self._indexing(self.selected_name()))

    def _show_hint(self) -> None:
        known = {library.name for library in self.libraries}
        used = [name for name in self.chosen if name in known]
        if used:
            self.hint.setText(f"This conversation answers from: {', '.join(used)}.")
        elif self.libraries:
            self.hint.setText("Tick the libraries this conversation answers from.")
        else:
            self.hint.setText(
                "No libraries yet. Add a folder of documents (or drop one here) to ask any conversation about it."
            )

    def _say(self, sentence: str) -> None:
        self.message.emit(sentence)

    def _show_note(self, text: str) -> None:
        self.note.setText(text)
        self.note.setVisible(bool(text))

    # -- the conversation's choice -----------------------------------------------------------------------------

    def show_choice(self, names: list[str]) -> None:
        """Tick ``names`` (the libraries of the conversation shown), without telling anyone it changed."""
        self.chosen = list(names)
        self._showing_choice = True
        try:
            for item in self._rows():
                name = item.data(NAME_COLUMN, Qt.ItemDataRole.UserRole)
                item.setCheckState(
                    NAME_COLUMN, Qt.CheckState.Checked if name in names else Qt.CheckState.Unchecked
                )
        finally:
            self._showing_choice = False
        self._show_hint()

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if self._showing_choice or column != NAME_COLUMN:
            return
        ticked = []
        for row in self._rows():
            if row.checkState(NAME_COLUMN) == Qt.CheckState.Checked:
                ticked.append(row.data(NAME_COLUMN, Qt.ItemDataRole.UserRole))
        self.chosen = ticked
        self.chosen_changed.emit(ticked)

    def set_ticked(self, name: str, ticked: bool) -> None:
        """Tick or untick library ``name`` as the person does."""
        for item in self._rows():
            if item.data(NAME_COLUMN, Qt.ItemDataRole.UserRole) == name:
                item.setCheckState(NAME_COLUMN, Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)

    # -- adding folders ----------------------------------------------------------------------------------------

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder to a library", str(Path.home()))
        if folder:
            self.open_add_form([Path(folder)])

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        event.acceptProposedAction()
        if paths:
            self.open_add_form(paths)

    def open_add_form(self, paths: list[Path]) -> None:
        """Ask for the library's name (a new one, or one to add to) and its embedding model, then index."""
        self._adding = [path.expanduser().resolve() for path in paths]
        shown = ", ".join(path.name or str(path) for path in self._adding)
        self.folders_label.setText(f"Add {shown}")
        self.folders_label.setToolTip("\n".join(str(path) for path in self._adding))
        self.name_box.clear()
        self.name_box.addItems([library.name for library in self.libraries])
        first = self._adding[0]
        self.name_box.setEditText(first.name if first.is_dir() else first.stem)  # an existing name adds to it
        models = [library.embedding_model for library in self.libraries if library.embedding_model]
        # The model another library uses, else the recommended one once downloaded.
        self.set_embedding_model(Path(models[-1]) if models else installed_embedding_model())
        if self.recommended_model is not None:
            self.recommended_model.refresh()
        self.add_form.show()
        self.name_box.setFocus()

    def close_add_form(self) -> None:
        self._adding = []
        self.add_form.hide()

    def choose_embedding_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose an embedding model", str(Path.home()), "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.set_embedding_model(Path(path))

    def set_embedding_model(self, path: Path | None) -> None:
        self.embedding_model = path
        self.clear_model_button.setEnabled(path is not None)
        self.model_label.setText(
            f"Searched by words and meaning, with {path.name}."
            if path is not None
            else "No embedding model: searched by words alone."
        )
        self.model_label.setToolTip(str(path) if path else "")

    @Slot(Path)
    def _on_recommended_installed(self, path: Path) -> None:
        if self.embedding_model is None:
            self.set_embedding_model(path)

    def index_added(self) -> None:
        name = self.name_box.currentText().strip()
        if not name:
            self._show_note("Give the library a name, e.g. the folder's.")
            return
        missing = [path for path in self._adding if not path.exists()]
        if missing:
            self._show_note(f"{missing[0]} is not there any more; choose the folder again.")
            return
        if self.embedding_model is not None and not self.embedding_model.is_file():
            self._show_note(f"The embedding model {self.embedding_model} is not there; choose it again.")
            return
        self.index(IndexRequest(name, tuple(self._adding), self.embedding_model))
        self.close_add_form()

    # -- indexing ----------------------------------------------------------------------------------------------

    def update_selected(self) -> None:
        name = self.selected_name()
        if name is not None:
            self.index(IndexRequest(name))

    def index(self, request: IndexRequest) -> None:
        """Index ``request`` on its own thread, after the run under way (one at a time: they share the disk and
        the cores)."""
        if self.run is not None:
            self.queue.append(request)
            self.progress_label.setText(f'{self.progress_label.text()}\n"{request.name}" is next.')
            return
        self._start(request)

    def _start(self, request: IndexRequest) -> None:
        run = IndexRun(self.db_path, request, self.engine_activity)
        run.signals.progress.connect(lambda progress: self._on_progress(run, progress))
        run.signals.finished.connect(lambda report: self._on_finished(run, report))
        run.signals.failed.connect(lambda sentence: self._on_failed(run, sentence))
        self.run = run
        self.progress_label.setText(f'Indexing "{request.name}": looking for files…')
        self.progress_bar.setRange(0, 0)
        self.cancel_button.setEnabled(True)
        self.progress_box.show()
        self._update_buttons()
        run.start()

    def _indexing(self, name: str | None) -> bool:
        return self.run is not None and self.run.request.name == name

    @property
    def indexing(self) -> bool:
        return self.run is not None

    def _on_progress(self, run: IndexRun, progress: IndexProgress) -> None:
        if run is not self.run or run.cancel.is_set():
            return
        left = f" · about {human_duration(progress.seconds_left)} left" if progress.seconds_left else ""
        self.progress_label.setText(
            f'Indexing "{run.request.name}": {progress.files_done}/{progress.files_total} files · '
            f"{counted(progress.passages, 'passage')}{left}"
        )
        self.progress_label.setToolTip(progress.current)
        self.progress_bar.setRange(0, max(progress.files_total, 1))
        self.progress_bar.setValue(progress.files_done)

    def cancel_indexing(self) -> None:
        """Stop the run under way (and those waiting); what it indexed is kept."""
        self.queue.clear()
        if self.run is not None:
            self.run.cancel.set()
            self.cancel_button.setEnabled(False)
            self.progress_label.setText(f'Stopping "{self.run.request.name}"; what was indexed is kept…')

    def _on_finished(self, run: IndexRun, report: IndexReport) -> None:
        if run is not self.run:
            return
        self.last_report = report
        status = "Stopped" if report.cancelled else "Indexed"
        lines = [
            f'{status} "{report.library}": {report.added} new, {report.updated} changed, '
            f"{report.unchanged} unchanged, {report.removed} removed files; "
            f"{counted(report.passages, 'passage')} written in {human_duration(report.seconds)}."
        ]
        if report.cancelled:
            lines.append("What was indexed is kept; Update goes on from there.")
        if report.problems:
            lines.append(f"{counted(len(report.problems), 'file')} could not be read (listed below).")
        if report.words_only and report.library not in self._noted_words_only:
            self._noted_words_only.add(report.library)
            lines.append(WORDS_ONLY_NOTE.format(name=report.library))
        self._show_note("\n".join(lines))
        self._end_run()

    def _on_failed(self, run: IndexRun, sentence: str) -> None:
        if run is not self.run:
            return
        self._show_note(sentence)
        self._end_run()

    def _end_run(self) -> None:
        self.run = None
        self.progress_box.hide()
        self.changed.emit()
        self.refresh()
        if self.queue:
            self._start(self.queue.pop(0))
        self._update_buttons()

    # -- removing ----------------------------------------------------------------------------------------------

    def confirm_remove(self) -> None:
        name = self.selected_name()
        if name is None:
            return
        answer = QMessageBox.question(
            self,
            "Remove library",
            f'Remove the library "{name}"? Its index is deleted; the files themselves stay where they are.',
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.remove(name)

    def remove(self, name: str) -> None:
        if self._indexing(name):
            self._show_note(f'"{name}" is being indexed; cancel that first, then remove it.')
            return

        def done(_: None) -> None:
            self._show_note(f'Removed the library "{name}" (its files are untouched).')
            if name in self.chosen:
                self.chosen.remove(name)
                self.chosen_changed.emit(list(self.chosen))
            self.changed.emit()
            self.refresh()

        self.library_thread.call(lambda db: remove_library(db, name), done, self._say, owner=self)

    def shutdown(self) -> None:
        """The window closes: the run under way stops after its current passage (it is not waited for)."""
        self.queue.clear()
        if self.run is not None:
            self.run.cancel.set()


class LibraryDock(QDockWidget):
    """The panel in a dock at the window's right; its toggle action is the toolbar's Library."""

    def __init__(self, panel: LibraryPanel, parent: QWidget | None = None) -> None:
        super().__init__("Library", parent)
        self.setObjectName("libraryDock")
        self.panel = panel
        self.setWidget(panel)
        self.setMinimumWidth(340)
        action = self.toggleViewAction()
        action.setText("Library")  # a panel shown and hidden, not a dialog: no ellipsis
        action.setToolTip("Folders of documents that any conversation can answer from")
