"""A document attached to the conversation: its name, size, and the summary in progress (parts done, the share
read or the words written of the part under way, the time left) with Stop; and a file still being read, with
Stop."""

from __future__ import annotations

import html

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app.core.documents.document import Document
from app.core.documents.summary_types import (
    STYLE_LABELS,
    SummaryProgress,
    SummaryResult,
    SummaryStage,
    SummaryStyle,
    summary_style,
)
from app.core.units import counted, human_bytes, human_duration

STAGE_LABELS: dict[SummaryStage, str] = {
    "sections": "Reading",
    "combining": "Combining",
    "final": "Writing the summary",
    "done": "Done",
}


class DocumentCard(QFrame):
    """Signals:
    summarize_requested(str): the style the user asked for ("brief", "detailed", "points").
    stop_requested(): stop the summary in progress (what is done is kept).
    """

    summarize_requested = Signal(str)
    stop_requested = Signal()

    def __init__(self, document: Document, tokens: int | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.setObjectName("documentCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName(f"Document {document.name}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)

        header = QHBoxLayout()
        # The style's own file icon: an emoji glyph (📄) is a missing-glyph box in fonts without emoji.
        self.icon_label = QLabel()
        self.icon_label.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_FileIcon).pixmap(16, 16))
        header.addWidget(self.icon_label)
        title = QLabel(f"<b>{html.escape(document.name)}</b>")
        title.setTextFormat(title.textFormat().RichText)
        self.title_label = title
        header.addWidget(title)
        details = [document.kind.upper()]
        if document.page_count:
            details.append(counted(document.page_count, "page"))
        if tokens:
            details.append("about " + counted(tokens, "token"))
        details.append(human_bytes(document.size))
        self.details_label = QLabel(" · ".join(details))
        self.details_label.setObjectName("messageStats")
        header.addWidget(self.details_label)
        header.addStretch(1)
        self.style_box = QComboBox()
        self.style_box.setAccessibleName("Summary style")
        for style, label in STYLE_LABELS.items():
            self.style_box.addItem(label, style)
        header.addWidget(self.style_box)
        self.summarize_button = QPushButton("Summarize")
        self.summarize_button.setAccessibleName(f"Summarize {document.name}")
        self.summarize_button.clicked.connect(lambda: self.summarize_requested.emit(self.chosen_style()))
        header.addWidget(self.summarize_button)
        layout.addLayout(header)

        progress_row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setAccessibleName(f"Summary progress for {document.name}")
        progress_row.addWidget(self.progress, 1)
        self.status_label = QLabel()
        progress_row.addWidget(self.status_label)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setAccessibleName(f"Stop summarizing {document.name}")
        self.stop_button.clicked.connect(self.stop_requested.emit)
        progress_row.addWidget(self.stop_button)
        layout.addLayout(progress_row)
        self.set_idle("Attached. Ask questions about it, or summarize it.")

    def chosen_style(self) -> SummaryStyle:
        """The summary style picked in the card's menu."""
        return summary_style(str(self.style_box.currentData()))

    def set_idle(self, text: str) -> None:
        self.progress.hide()
        self.stop_button.hide()
        self.summarize_button.setEnabled(True)
        self.style_box.setEnabled(True)
        self.status_label.setText(text)

    def set_started(self) -> None:
        self.progress.setValue(0)
        self.progress.show()
        self.stop_button.show()
        self.summarize_button.setEnabled(False)
        self.style_box.setEnabled(False)
        self.status_label.setText("Starting…")

    def set_progress(self, progress: SummaryProgress) -> None:
        self.progress.setValue(int(progress.fraction * 100))
        within = ""  # the part under way: a document of one part is one part for all its minutes
        if progress.part_read is not None:
            within = f"{int(100 * progress.part_read)}% read"
        elif progress.words_written is not None:
            within = f"{counted(progress.words_written, 'word')} written"
        if within and progress.total == 1:
            text = f"{STAGE_LABELS[progress.stage]}: {within}"
        else:
            text = f"{STAGE_LABELS[progress.stage]}: {progress.done} of {counted(progress.total, 'part')}"
            if within:
                text += f" · part {progress.done + 1}: {within}"
        if progress.eta_seconds is not None and progress.stage != "done":
            text += f", about {human_duration(progress.eta_seconds)} left"
        if progress.cache_hits:
            text += f" ({progress.cache_hits} from earlier runs)"
        self.status_label.setText(text)

    def set_finished(self, result: SummaryResult) -> None:
        if result.cancelled:
            done = len(result.section_summaries)
            self.set_idle(
                f"Stopped after {done} of {counted(result.chunk_count, 'part')}. The finished parts are kept: "
                "Summarize continues from there."
            )
        else:
            self.progress.setValue(100)
            self.set_idle(
                f"{STYLE_LABELS[result.style]} summary of {counted(result.chunk_count, 'part')} "
                f"in {human_duration(result.seconds)}"
                + (f", {result.cache_hits:,} reused from earlier runs" if result.cache_hits else "")
                + "."
            )

    def set_failed(self, message: str) -> None:
        self.set_idle(message or "Stopped.")


class ReadingCard(QFrame):
    """A file being read, then stored and indexed, before it is attached; Stop leaves it unattached.

    Signals:
    stop_requested(): stop reading the file (nothing of it is attached).
    """

    stop_requested = Signal()

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.setObjectName("documentCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName(f"Reading {name}")
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 8, 10, 8)
        icon = QLabel()
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_FileIcon).pixmap(16, 16))
        row.addWidget(icon)
        title = QLabel(f"<b>{html.escape(name)}</b>")
        title.setTextFormat(title.textFormat().RichText)
        row.addWidget(title)
        self.status_label = QLabel("Reading…")
        self.status_label.setObjectName("messageStats")
        row.addWidget(self.status_label)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # a read does not know how far it is: the bar only shows it is working
        self.progress.setAccessibleName(f"Reading {name}")
        row.addWidget(self.progress, 1)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setAccessibleName(f"Stop reading {name}")
        self.stop_button.setToolTip("Stop reading this file; it is not attached (Esc)")
        self.stop_button.clicked.connect(self.stop_requested.emit)
        row.addWidget(self.stop_button)

    def set_indexing(self) -> None:
        self.status_label.setText("Indexing its passages…")
