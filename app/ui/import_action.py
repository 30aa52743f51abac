"""Import conversations in the window: the action (a file dialog, or export files dropped on the list) and the
import itself, on a pool thread with a history store of its own, so a large file does not freeze the window.

What it did comes back as a sentence: how many conversations were added, or what was wrong with a file (not an
export, damaged, a Markdown export). A file that fails adds nothing of its own; the history is left as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QWidget

from app import APP_NAME
from app.core.errors import UserError
from app.core.history.errors import HistoryFormatError
from app.core.history.imports import import_outcome, read_export_file
from app.core.history.store import HistoryStore
from app.ui.background import run_in_pool

log = logging.getLogger(__name__)

FILE_FILTER = f"{APP_NAME} exports (*.json);;All files (*)"
EXPORT_SUFFIX = ".json"


@dataclass
class ImportReport:
    """The outcome of importing one or more files: the conversations added (in file order) and a sentence for
    each file."""

    imported: list[int] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def import_files(history_path: Path, paths: Sequence[Path]) -> ImportReport:
    """Import each export file into the history at ``history_path`` (run on a pool thread: the store opened here
    is this thread's own). One file's problem is its sentence; the other files are still imported."""
    report = ImportReport()
    with HistoryStore(history_path) as store:
        for path in paths:
            try:
                result = store.import_json(read_export_file(path), path.name)
            except HistoryFormatError as exc:  # refused whole, before anything was written
                report.sentences.append(
                    f"Nothing was imported from {path.name}; your conversations are as they were. {exc}"
                )
                continue
            except UserError as exc:  # the history could not be written (says what was imported before that)
                report.sentences.append(str(exc))
                continue
            report.imported.extend(result.imported)
            report.sentences.append(import_outcome(result, path.name))
    return report


def is_export_file(path: str) -> bool:
    """Whether a dropped file looks like an export to import (else it is left to the window: a document)."""
    return path.lower().endswith(EXPORT_SUFFIX)


class ConversationImport(QObject):
    """The Import conversations… action and the import it starts (one at a time).

    Signals:
        finished(object): an ``ImportReport``, on the GUI thread, once the history holds what was imported.
    """

    finished = Signal(object)

    def __init__(self, history_path: Path, parent: QWidget) -> None:
        super().__init__(parent)
        self._history_path = history_path
        self._dialog_parent = parent
        self.running = False
        self.action = QAction("Import conversations…", parent)
        self.action.setToolTip(f"Add conversations from a {APP_NAME} JSON export (Export as JSON…)")
        self.action.triggered.connect(self.choose)

    def choose(self) -> None:
        """Ask for export files and import them."""
        paths, _ = QFileDialog.getOpenFileNames(
            self._dialog_parent, "Import conversations", str(Path.home()), FILE_FILTER
        )
        if paths:
            self.start([Path(p) for p in paths])

    def start(self, paths: Sequence[Path]) -> None:
        if self.running or not paths:
            return
        self.running = True
        self.action.setEnabled(False)
        chosen = list(paths)
        log.info("importing conversations from %s", ", ".join(str(p) for p in chosen))
        run_in_pool(
            lambda: import_files(self._history_path, chosen), self._on_done, self._on_error, owner=self
        )

    def _end(self) -> None:
        self.running = False
        self.action.setEnabled(True)

    def _on_done(self, report: ImportReport) -> None:
        self._end()
        self.finished.emit(report)

    def _on_error(self, error: BaseException) -> None:
        self._end()
        # Not a sentence of the import's own (those are in the report): the store could not be opened, or a bug,
        # whose traceback the pool has logged.
        text = (
            str(error)
            if isinstance(error, UserError)
            else "The conversations could not be imported because of an unexpected error (the log has the "
            "details). The conversations you had are untouched; import the file again to add what is missing "
            "(those already imported are skipped)."
        )
        self.finished.emit(ImportReport(sentences=[text]))
