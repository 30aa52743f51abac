"""Settings → Models: the chat template each installed model runs with. A model uses its file's own template,
or, for a file without one, the built-in its architecture was tuned on (``builtin_for_file``); the person may
choose a built-in template instead for any model (kept in ``settings.chat_templates``, path -> built-in name),
and remove that choice again. The window reloads the loaded model when its choice changed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import UserError
from app.core.llm.engine import ModelInfo
from app.core.llm.gguf_check import check_model_file
from app.core.llm.remote_info import RemoteModelInfo
from app.core.llm.templates import BUILTIN_TEMPLATES, builtin_for_file
from app.core.models.inventory import chat_models
from app.core.settings import Settings
from app.ui.background import run_in_pool

log = logging.getLogger(__name__)

NO_CHOICE = ""  # the combo's data for "the file's own template, or the automatic one for a file without"
MODEL_COLUMN, USES_COLUMN, CHOICE_COLUMN = range(3)
READING = "Reading the file…"


@dataclass(frozen=True)
class FileTemplate:
    """What a model file says about its chat template."""

    own: str | None  # the file's own template (Jinja source); None: it has none
    automatic: str  # the built-in used when it has none (``builtin_for_file``)

    def label(self) -> str:
        """How the choice "no built-in chosen" reads for this file."""
        if self.own:
            style = next(
                (t.title for t in BUILTIN_TEMPLATES.values() if any(stop in self.own for stop in t.stops)),
                None,
            )
            # A file's template has no name of its own: the turn markers it uses say which family it is.
            return f"The file's own ({style or 'custom'})"
        return f"Automatic: {BUILTIN_TEMPLATES[self.automatic].title}"

    def uses(self) -> str:
        """What the model uses when no built-in is chosen for it, said briefly."""
        if self.own:
            return "The file's own"
        return f"{BUILTIN_TEMPLATES[self.automatic].title} (the file has none)"


def read_file_templates(paths: Sequence[str]) -> dict[str, FileTemplate | str]:
    """Each file's template, or a sentence saying why it cannot be loaded (unreadable, or not a chat model:
    an embedding model sits in the same folders). Runs on a pool thread: reading every model's header takes a
    moment on a slow disk."""
    found: dict[str, FileTemplate | str] = {}
    for path in paths:
        try:
            gguf = check_model_file(path)
        except UserError as exc:
            found[path] = str(exc)
            continue
        found[path] = FileTemplate(gguf.chat_template or None, builtin_for_file(gguf))
    return found


def loaded_model_file(model: ModelInfo | None, pending: str | None = None) -> str | None:
    """The model file on this computer that is loaded (or loading); None when none is, or a server answers."""
    if pending:
        return pending
    if model is None or isinstance(model, RemoteModelInfo):
        return None
    return str(model.path)


class ModelTemplatesSection(QGroupBox):
    """A row per installed model: its name, the template it uses now, and the choice of template.
    ``apply_to`` writes the choices into settings."""

    def __init__(
        self, settings: Settings, loaded_model: str | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__("Chat templates", parent)
        self.loaded_model = loaded_model
        self._chosen = dict(settings.chat_templates)
        self.files: dict[str, FileTemplate | str] = {}
        layout = QVBoxLayout(self)
        note = QLabel(
            "The chat template turns a conversation into the text the model was trained on. A model uses its "
            "file's own; for a file without one, the built-in its architecture was tuned on. Choose another "
            "when a model's answers look broken (its model card names the format)."
        )
        note.setWordWrap(True)
        layout.addWidget(note)
        self.table = QTableWidget(0, 3)
        self.table.setAccessibleName("Chat template of each model")
        self.table.setHorizontalHeaderLabels(["Model", "Uses now", "Chat template"])
        self.table.verticalHeader().setVisible(False)
        # Each row holds a combo box: as tall as one, with a little air.
        self.table.verticalHeader().setDefaultSectionSize(QComboBox().sizeHint().height() + 6)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(MODEL_COLUMN, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(USES_COLUMN, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(CHOICE_COLUMN, QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.table, 1)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setVisible(False)
        layout.addWidget(self.status)
        self.choices: dict[str, QComboBox] = {}
        self.uses_items: dict[str, QTableWidgetItem] = {}

        paths = [str(model.path) for model in chat_models(settings.imported_models)]
        if loaded_model and loaded_model not in paths:
            paths.append(loaded_model)  # opened from elsewhere: its template can be chosen all the same
        for path in paths:
            self._add_row(path)
        if not paths:
            self.status.setText("No model is installed yet: get one in the Models window.")
            self.status.setVisible(True)
        else:
            run_in_pool(lambda: read_file_templates(paths), self._on_read, self._on_read_failed, owner=self)

    def _add_row(self, path: str) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        name = Path(path).stem
        shown = QTableWidgetItem(name + ("  (loaded)" if path == self.loaded_model else ""))
        shown.setToolTip(path)
        self.table.setItem(row, MODEL_COLUMN, shown)
        uses = QTableWidgetItem()
        self.table.setItem(row, USES_COLUMN, uses)
        self.uses_items[path] = uses
        combo = QComboBox()
        combo.setAccessibleName(f"Chat template for {name}")
        combo.addItem(READING, NO_CHOICE)
        for key, template in BUILTIN_TEMPLATES.items():
            combo.addItem(template.title, key)
        combo.setCurrentIndex(max(0, combo.findData(self._chosen.get(path, NO_CHOICE))))
        self.table.setCellWidget(row, CHOICE_COLUMN, combo)
        self.choices[path] = combo
        uses.setText(self._describe_use(path))

    def row_of(self, path: str) -> int:
        return list(self.choices).index(path)

    def uses_now(self, path: str) -> str:
        """The template ``path`` runs with now, as the "Uses now" column says it."""
        return self.uses_items[path].text()

    def _describe_use(self, path: str) -> str:
        chosen = self._chosen.get(path)
        if chosen in BUILTIN_TEMPLATES:
            return f"{BUILTIN_TEMPLATES[chosen].title} (chosen)"
        found = self.files.get(path)
        if isinstance(found, FileTemplate):
            return found.uses()
        return "Cannot be loaded" if isinstance(found, str) else READING

    def _on_read(self, found: object) -> None:
        assert isinstance(found, dict)
        self.files = found
        for path, combo in self.choices.items():
            file = found.get(path)
            combo.setItemText(0, file.label() if isinstance(file, FileTemplate) else "The file's own")
            uses = self.uses_items[path]
            uses.setText(self._describe_use(path))
            if isinstance(file, str):
                uses.setToolTip(file)
                combo.setToolTip(file)
                combo.setEnabled(False)  # a template would not make it load; a choice made earlier is kept
        unreadable = [path for path, file in found.items() if isinstance(file, str)]
        if unreadable:
            self.status.setText(
                f"{len(unreadable)} model file{'s' if len(unreadable) != 1 else ''} cannot be loaded, whatever "
                "its template: point at its row to see why."
            )
            self.status.setVisible(True)

    def _on_read_failed(self, error: BaseException) -> None:
        log.error("reading the models' chat templates failed", exc_info=error)
        self.status.setText("The models' own templates could not be read; see the log for details.")
        self.status.setVisible(True)

    def restore_defaults(self) -> None:
        """Every model back to its file's own template (or the automatic one)."""
        for combo in self.choices.values():
            combo.setCurrentIndex(0)

    def apply_to(self, settings: Settings) -> None:
        """The choices shown; choices for files not listed here (gone from the disk) are kept as they were."""
        for path, combo in self.choices.items():
            chosen = str(combo.currentData() or NO_CHOICE)
            if chosen:
                settings.chat_templates[path] = chosen
            else:
                settings.chat_templates.pop(path, None)
