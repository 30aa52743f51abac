"""The Settings dialog's "Other apps" section: the switch that serves the loaded model to other programs on this
computer (the OpenAI-compatible API on 127.0.0.1), its port, how many requests are answered together, whether
their conversations are kept, the web apps allowed to call it from a browser, and the base URL to copy. The server
itself is run by ``app.ui.serving``; while it starts or stops, the switch waits."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QToolButton,
    QWidget,
)

from app.core.llm.load_options import AUTOMATIC_PARALLEL, MAX_PARALLEL
from app.core.serve.address import LOOPBACK, base_url
from app.core.settings import Settings, split_web_origins

SWITCH_LABEL = "Let other apps on this computer use the loaded model"
PARALLEL_LABEL = "Requests answered together"
COPIED_SHOWN_MS = 1500  # how long the Copy button says "Copied" after a click


class ServeSection(QGroupBox):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__("Serve the loaded model", parent)
        form = QFormLayout(self)
        self.enabled = QCheckBox(SWITCH_LABEL)
        self.enabled.setChecked(settings.serve_enabled)
        self.enabled.setToolTip(
            "Editors, scripts and other programs on this computer can then ask the model through the "
            "OpenAI API. Their requests wait behind yours."
        )
        form.addRow(self.enabled)
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(settings.serve_port)
        self.port.setAccessibleName("Port for other apps")
        form.addRow("Port", self.port)
        self.parallel = QSpinBox()
        self.parallel.setRange(AUTOMATIC_PARALLEL, MAX_PARALLEL)  # the range settings.load accepts
        self.parallel.setSpecialValueText("Automatic")
        self.parallel.setValue(settings.serve_parallel)
        self.parallel.setAccessibleName(PARALLEL_LABEL)
        self.parallel.setToolTip(
            "How many apps' requests the model answers at once, instead of one after another. Each one gets "
            "the context size set under Engine. Automatic answers up to 4 together, as many as the memory free "
            "when the model loads allows; a larger number uses more memory. While serving, a change loads the "
            "model again."
        )
        form.addRow(PARALLEL_LABEL, self.parallel)
        self.save_history = QCheckBox("Keep their conversations in my history")
        self.save_history.setChecked(settings.serve_save_history)
        self.save_history.setToolTip(
            "Each request another app makes is saved as a conversation, marked as served to another app."
        )
        form.addRow(self.save_history)
        self.origins = QPlainTextEdit("\n".join(settings.serve_allowed_origins))
        self.origins.setPlaceholderText("https://chat.example.com")
        self.origins.setAccessibleName("Web apps allowed to use the model")
        self.origins.setToolTip(
            "Web pages are refused unless their origin is listed here (one per line, or separated by commas). "
            "List only web apps you trust: they can use the model like any other app."
        )
        self.origins.setFixedHeight(self.origins.fontMetrics().lineSpacing() * 3 + 12)
        form.addRow("Web apps allowed", self.origins)
        self.origins_problem = QLabel()
        self.origins_problem.setWordWrap(True)
        self.origins_problem.setVisible(False)
        form.addRow(self.origins_problem)
        self.origins.textChanged.connect(self._check_origins)
        row = QHBoxLayout()
        self.url = QLabel()
        self.url.setTextInteractionFlags(self.url.textInteractionFlags().TextSelectableByMouse)
        self.url.setAccessibleName("Address for other apps")
        self.copy = QToolButton()
        self.copy.setText("Copy")
        self.copy.setAccessibleName("Copy the address for other apps")
        self.copy.clicked.connect(self._copy_url)
        row.addWidget(self.url, 1)
        row.addWidget(self.copy)
        form.addRow("Address (base URL)", row)
        self.busy = QLabel()
        self.busy.setAccessibleName("What the server for other apps is doing")
        self.busy.setVisible(False)
        form.addRow(self.busy)
        self.enabled.toggled.connect(self._update)
        self.port.valueChanged.connect(self._update)
        self._update()

    def base_url(self) -> str:
        return base_url(LOOPBACK, self.port.value())

    def _copy_url(self) -> None:
        QApplication.clipboard().setText(self.base_url())
        # The dialog has no status bar: the button itself confirms, then offers to copy again.
        self.copy.setText("Copied")
        QTimer.singleShot(COPIED_SHOWN_MS, self, lambda: self.copy.setText("Copy"))

    def _update(self) -> None:
        self.url.setText(self.base_url())
        on = self.enabled.isChecked()
        self.url.setEnabled(on)
        self.copy.setEnabled(on)

    def _check_origins(self) -> None:
        _origins, problems = split_web_origins(self.origins.toPlainText())
        self.origins_problem.setText(" ".join([*problems, "Such entries are left out."] if problems else []))
        self.origins_problem.setVisible(bool(problems))

    def show_busy(self, text: str) -> None:
        """The server is starting or stopping (``text`` says which; "" once it is done): its switch, port and
        history choice wait until then, so what they show is what was asked last."""
        self.busy.setText(text)
        self.busy.setVisible(bool(text))
        for widget in (self.enabled, self.port, self.parallel, self.save_history, self.origins):
            widget.setEnabled(not text)

    def restore_defaults(self) -> None:
        defaults = Settings()
        self.enabled.setChecked(defaults.serve_enabled)
        self.port.setValue(defaults.serve_port)
        self.parallel.setValue(defaults.serve_parallel)
        self.save_history.setChecked(defaults.serve_save_history)
        self.origins.setPlainText("\n".join(defaults.serve_allowed_origins))

    def apply_to(self, settings: Settings) -> None:
        settings.serve_enabled = self.enabled.isChecked()
        settings.serve_port = self.port.value()
        settings.serve_parallel = self.parallel.value()
        settings.serve_save_history = self.save_history.isChecked()
        settings.serve_allowed_origins = split_web_origins(self.origins.toPlainText())[0]
