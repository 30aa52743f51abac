"""The Library panel's offer of the recommended embedding model: a button that downloads it through the window's
downloads (so the Models window shows it too, and it pauses and resumes like any model), its progress, and the
sentence when it fails. Once it is on disk, the panel's add form uses it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from app.core.models.catalog import EmbeddingCatalogEntry, load_embedding_catalog
from app.core.models.downloads.progress import DownloadProgress
from app.core.models.inventory import embedding_model_path, installed_embedding_model
from app.core.units import human_bytes
from app.ui.downloads import Downloads


class RecommendedEmbeddingModel(QWidget):
    """Hidden when the recommended model is installed or the catalog has none.

    Signals:
        installed(Path): the recommended embedding model was downloaded and verified.
    """

    installed = Signal(Path)

    def __init__(self, downloads: Downloads, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.downloads = downloads
        entries = load_embedding_catalog()
        self.entry: EmbeddingCatalogEntry | None = entries[0] if entries else None
        # The status goes under the button, not beside it: a sentence beside it (a failed download's) would ask
        # for the width of the whole line and widen the dock, squeezing the conversation.
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.button = QPushButton()
        self.button.clicked.connect(self.download)
        row.addWidget(self.button)
        row.addStretch(1)
        column.addLayout(row)
        self.status = QLabel()
        self.status.setObjectName("messageStats")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status.hide()  # shown with a sentence, so an empty one leaves no gap
        column.addWidget(self.status)
        if self.entry is not None:
            self.button.setText(f"Get {self.entry.name} ({human_bytes(self.entry.size)})")
            self.button.setToolTip(
                f"{self.entry.description} Downloaded from {self.entry.repo_id} and checked against the "
                "sha256 LlamaDesk knows for it."
            )
        downloads.progress.connect(self._on_progress)
        downloads.installed.connect(self._on_installed)
        downloads.failed.connect(self._on_failed)
        self.refresh()

    def refresh(self) -> None:
        """Offered only while there is something to get."""
        self.setVisible(self.entry is not None and installed_embedding_model() is None)

    @Slot()
    def download(self) -> None:
        if self.entry is None:
            return
        self.button.setEnabled(False)
        self._say("Asking the Hugging Face Hub for it…")
        self.downloads.controller.start(self.entry.repo_id, None, self.entry.file)

    def _say(self, sentence: str) -> None:
        self.status.setText(sentence)
        self.status.setVisible(bool(sentence))

    def _mine(self, repo_id: str) -> bool:
        return self.entry is not None and repo_id.lower() == self.entry.repo_id.lower()

    @Slot(object)
    def _on_progress(self, progress: DownloadProgress) -> None:
        if self.entry is not None and progress.file_name == self.entry.file:
            self.button.setEnabled(False)
            self._say(progress.describe())

    @Slot(str)
    def _on_installed(self, path: str) -> None:
        if self.entry is None or Path(path) != embedding_model_path(self.entry):
            return
        self._say("")
        self.button.setEnabled(True)
        self.refresh()
        self.installed.emit(Path(path))

    @Slot(str, str)
    def _on_failed(self, repo_id: str, sentence: str) -> None:
        if self._mine(repo_id):
            self.button.setEnabled(True)
            self._say(sentence)
