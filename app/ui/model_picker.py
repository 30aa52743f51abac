"""Choosing and loading the model: the toolbar's picker, the status bar's load progress, Open GGUF, and the
model manager (a view of the window's downloads, which go on while it is closed).

While a server answers (Settings → Engine), the picker still lists this computer's models: choosing one, as in
LM Studio and Jan, makes this computer the engine again and loads it, rather than being refused because a server
is in place. The status bar names the server and its model, and says so once the server failed to answer,
until it answers again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QStatusBar,
    QWidget,
)

from app.core.errors import UserError
from app.core.limits import MAX_CONTEXT
from app.core.llm.engine import ModelInfo, ReplyStats
from app.core.llm.gguf_check import check_model_file
from app.core.llm.load_options import LoadOptions
from app.core.llm.remote_info import RemoteModelInfo
from app.core.llm.templates import BUILTIN_TEMPLATES
from app.core.models.inventory import chat_models
from app.core.settings import Settings
from app.ui.background import run_in_pool
from app.ui.downloads import Downloads
from app.ui.engine_bridge import EngineBridge

if TYPE_CHECKING:
    from app.ui.model_manager import ModelManagerDialog

log = logging.getLogger(__name__)

OPEN_FILE_ITEM = "__open_file__"
CODE_MODEL_HINTS = ("coder", "code")
LOCAL_PICKER_TIP = "The model that answers, on this computer. Choose another to load it."


def window_parallel(settings: Settings) -> int:
    """The requests the window's model is loaded to answer together: the number set under Other apps while it
    serves them (0: automatic), else one, since no other app can ask then and room for them would only take
    memory."""
    return settings.serve_parallel if settings.serve_enabled else 1


def window_load_options(settings: Settings, path: str) -> LoadOptions:
    """What the window loads the model file ``path`` with, from the settings."""
    parallel = window_parallel(settings)
    context_size = settings.context_size
    if parallel > 1 and context_size:
        # A number chosen shares the context it is given among its requests, where automatic gives each one the
        # whole: given that many times the Context size, each request has the room Settings → Engine says, as
        # with automatic (up to the largest context llama.cpp is given; the status bar shows each one's share).
        context_size = min(context_size * parallel, MAX_CONTEXT)
    return LoadOptions(
        context_size=context_size,
        threads=settings.threads,
        gpu_layers=settings.gpu_layers,
        chat_template=settings.chat_templates.get(path),
        parallel=parallel,
    )


class ModelController(QObject):
    """Owns the picker and the load status widgets; asks the engine bridge to load.

    Signals:
        settings_changed(): the last model or the imported files changed; the window saves the settings.
        message(str): a sentence for the banner.
        template_refused(str, str): a model's chat template was refused (the sentence, the model file): the
            window offers ``choose_template`` for it.
        local_engine_wanted(): a model file was chosen while a server answers: the settings now choose this
            computer, with that file as the model to load there; the window applies them (Settings → Engine).
    """

    settings_changed = Signal()
    message = Signal(str)
    template_refused = Signal(str, str)
    local_engine_wanted = Signal()

    def __init__(
        self,
        bridge: EngineBridge,
        settings: Settings,
        window: QWidget,
        status: QStatusBar,
        downloads: Downloads,
    ) -> None:
        super().__init__(window)
        self.bridge = bridge
        self.settings = settings
        self.window = window
        self.downloads = downloads
        self.pending_model: str | None = None
        # Why the server failed its last request (a sentence), until it answers again; "" when it did answer.
        self.server_failure = ""
        self.model_manager: ModelManagerDialog | None = None
        downloads.installed.connect(lambda _path: self.refresh())

        self.picker = QComboBox()
        self.picker.setMinimumWidth(280)
        self.picker.setAccessibleName("Model")
        self.picker.setToolTip(LOCAL_PICKER_TIP)
        self.picker.activated.connect(self._on_picked)

        self.model_label = QLabel("No model")
        self.model_label.setAccessibleName("Loaded model")
        status.addWidget(self.model_label)
        self.load_bar = QProgressBar()
        self.load_bar.setRange(0, 100)
        self.load_bar.setMaximumWidth(180)
        self.load_bar.setAccessibleName("Model loading progress")
        self.load_bar.hide()
        status.addWidget(self.load_bar)
        self.cancel_load_button = QPushButton("Cancel")
        self.cancel_load_button.setAccessibleName("Cancel loading the model")
        self.cancel_load_button.clicked.connect(self.bridge.stop)
        self.cancel_load_button.hide()
        status.addWidget(self.cancel_load_button)

        bridge.load_progress.connect(self._on_load_progress)
        bridge.model_loaded.connect(self._on_model_loaded)
        bridge.load_failed.connect(self._on_load_failed)
        bridge.template_refused.connect(lambda path, sentence: self.template_refused.emit(sentence, path))
        bridge.engine_switched.connect(self._on_engine_switched)
        bridge.reply_failed.connect(self._on_reply_failed)
        bridge.reply_finished.connect(self._on_reply_finished)

    # -- the picker --------------------------------------------------------------------------------------

    def refresh(self) -> None:
        self.picker.blockSignals(True)
        self.picker.clear()
        loaded = str(self.bridge.model.path) if self.bridge.model else self.pending_model
        for model in chat_models(self.settings.imported_models):
            label = model.display_name + ("  (starter)" if model.source == "starter" else "")
            self.picker.addItem(label, str(model.path))
            self.picker.setItemData(self.picker.count() - 1, str(model.path), Qt.ItemDataRole.ToolTipRole)
        if loaded and self.picker.findData(loaded) < 0:
            answering = self.bridge.model  # a local file's, or a server's (Settings → Engine)
            shown = answering.display_name if answering else Path(loaded).stem
            self.picker.addItem(shown, loaded)
        self.picker.addItem("Open GGUF file…", OPEN_FILE_ITEM)
        index = self.picker.findData(loaded) if loaded else -1
        self.picker.setCurrentIndex(index)
        if index < 0:
            self.picker.setPlaceholderText("Choose a model")
        self._describe_picker()
        self.picker.blockSignals(False)

    def _describe_picker(self) -> None:
        """The picker's tooltip says which engine is in place, and what choosing a file here does then."""
        answering = self.bridge.model
        if not isinstance(answering, RemoteModelInfo) or self.pending_model:
            self.picker.setToolTip(LOCAL_PICKER_TIP)
            return
        where = f"the server at {answering.base_url}"
        state = (
            f"{answering.name} on {where} did not answer the last request."
            if self.server_failure
            else f"{answering.name} on {where} is in use (Settings → Engine)."
        )
        self.picker.setToolTip(f"{state} Choosing a model file runs it on this computer instead.")
        index = self.picker.findData(str(answering.path))
        if index >= 0:
            self.picker.setItemData(index, state, Qt.ItemDataRole.ToolTipRole)

    @Slot(int)
    def _on_picked(self, index: int) -> None:
        data = self.picker.itemData(index)
        if data == OPEN_FILE_ITEM:
            self.refresh()
            self.choose_file()
        elif data and (self.bridge.model is None or str(self.bridge.model.path) != data):
            self.load(str(data))

    def code_model(self) -> str | None:
        """An installed model made for code, for the Code mode."""
        for model in chat_models(self.settings.imported_models):
            if any(hint in model.path.name.lower() for hint in CODE_MODEL_HINTS):
                return str(model.path)
        return None

    # -- opening and loading -----------------------------------------------------------------------------

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Open a GGUF model", str(Path.home()), "GGUF models (*.gguf)"
        )
        if path:
            self.import_file(path)

    def import_file(self, path: str) -> None:
        """Validate off the GUI thread, remember the file, then load it."""
        self.model_label.setText(f"Checking {Path(path).name}…")

        def on_valid(_info: object) -> None:
            resolved = str(Path(path).resolve())
            known = chat_models(self.settings.imported_models)
            if resolved not in self.settings.imported_models and not any(
                str(m.path) == resolved for m in known
            ):
                self.settings.imported_models.append(resolved)
                self.settings_changed.emit()
            if self.model_manager is not None:
                self.model_manager.note_model_file(resolved)
            self.load(resolved)

        def on_invalid(error: BaseException) -> None:
            self.model_label.setText(self.bridge.model.display_name if self.bridge.model else "No model")
            self.message.emit(
                str(error) if isinstance(error, UserError) else f"{Path(path).name} could not be read."
            )

        run_in_pool(lambda: check_model_file(path), on_valid, on_invalid, owner=self)

    def load(self, path: str) -> None:
        """Load the model file ``path``; while a server answers, this computer becomes the engine first."""
        if self.bridge.remote:
            self._switch_to_local(path)
            return
        self.pending_model = path
        options = window_load_options(self.settings, path)
        self.model_label.setText(f"Loading {Path(path).stem}…")
        self.load_bar.setValue(0)
        self.load_bar.show()
        self.cancel_load_button.show()
        self.bridge.load(path, options)

    def _switch_to_local(self, path: str) -> None:
        """A file was chosen while a server answers: what a person means is this computer's engine with that file
        (LM Studio and Jan switch so), not a refusal. The window's engine switcher replaces the server's engine
        and then loads the model used last, which ``path`` now is."""
        self.bridge.stop()  # as a load does: the reply under way would hold the switch until it ended
        self.settings.engine = "local"
        self.settings.last_model = path
        self.pending_model = path
        self.server_failure = ""
        self.model_label.setText(f"Switching to this computer to load {Path(path).stem}…")
        self.settings_changed.emit()
        self._describe_picker()  # the picker shows the file chosen; the tooltip no longer speaks of the server
        self.local_engine_wanted.emit()

    def choose_template(self, path: str) -> None:
        """Ask which built-in chat template to use for ``path`` (its own was refused), then load with it."""
        titles = [template.title for template in BUILTIN_TEMPLATES.values()]
        title, ok = QInputDialog.getItem(
            self.window,
            "Choose a chat template",
            f"{Path(path).name} cannot use its own chat template. Load it with one of these instead (the one its "
            "model card names, if you know it):",
            titles,
            0,
            False,
        )
        if ok:
            self.load_with_template(path, next(k for k, t in BUILTIN_TEMPLATES.items() if t.title == title))

    def load_with_template(self, path: str, name: str) -> None:
        """Remember ``name`` as ``path``'s chat template and load the model with it."""
        self.settings.chat_templates[path] = name
        self.settings_changed.emit()
        self.load(path)

    @Slot(float)
    def _on_load_progress(self, fraction: float) -> None:
        self.load_bar.setValue(int(fraction * 100))

    def _show_model(self, info: ModelInfo | None) -> None:
        """The status bar's model: a file's name, or a server's model and the server, and whether the server
        failed the last request (then it is not described as answering)."""
        if info is None:
            self.model_label.setText("No model")
            self.model_label.setToolTip("")
            return
        if not isinstance(info, RemoteModelInfo):
            self.model_label.setText(
                f"{info.display_name} · {info.context_size:,} tokens of context"
                + (f" · {info.template_note}" if info.template_note else "")
            )
            self.model_label.setToolTip(str(info.path))
            return
        where = f"{info.display_name} at {info.base_url}"
        if self.server_failure:
            self.model_label.setText(f"{where} · did not answer the last request")
            self.model_label.setToolTip(
                f"{self.server_failure} Ask again once it is back, or choose a model on this computer in the "
                "model picker."
            )
        else:
            self.model_label.setText(f"{where} · {info.context_size:,} tokens of context")
            self.model_label.setToolTip(
                f"The model {info.name} on the server at {info.base_url} (Settings → Engine)."
            )

    @Slot(object)
    def _on_engine_switched(self, info: ModelInfo | None) -> None:
        self.server_failure = ""
        if self.pending_model is None:  # else the label says what loads next
            self._show_model(info)
        self.refresh()

    @Slot(str)
    def _on_reply_failed(self, message: str) -> None:
        if self.bridge.remote:
            self.server_failure = message or "The server's reply was stopped."
            self._show_model(self.bridge.model)
            self._describe_picker()

    @Slot(ReplyStats)
    def _on_reply_finished(self, stats: ReplyStats) -> None:
        # A reply stopped before its first word says nothing of whether the server is back.
        if self.server_failure and (stats.finish_reason != "cancelled" or stats.generated_tokens):
            self.server_failure = ""
            self._show_model(self.bridge.model)
            self._describe_picker()

    @Slot(ModelInfo)
    def _on_model_loaded(self, info: ModelInfo) -> None:
        self.pending_model = None
        self.server_failure = ""  # a server's model is announced on connecting: it answered then
        self.load_bar.hide()
        self.cancel_load_button.hide()
        self._show_model(info)
        if not isinstance(info, RemoteModelInfo):  # a server's model is no file to load next time
            self.settings.last_model = str(info.path)
            self.settings_changed.emit()
        self.refresh()
        if self.model_manager is not None:
            self.model_manager.set_context(info.context_size, info.file_size)

    @Slot(str)
    def _on_load_failed(self, message: str) -> None:
        self.pending_model = None
        self.load_bar.hide()
        self.cancel_load_button.hide()
        self._show_model(self.bridge.model)
        if message:
            self.message.emit(message)
        self.refresh()

    # -- the model manager -------------------------------------------------------------------------------

    def open_manager(self) -> None:
        from app.ui.model_manager import ModelManagerDialog  # built on first use: it probes the hardware

        if self.model_manager is None:
            loaded = self.bridge.model
            manager = ModelManagerDialog(
                self.window,
                downloads=self.downloads,
                context_size=self.settings.context_size,
                loaded_model_bytes=loaded.file_size if loaded else 0,
                imported_models=lambda: self.settings.imported_models,  # read live: files opened later
            )
            manager.model_chosen.connect(self.load)
            manager.destroyed.connect(self._manager_gone)
            self.model_manager = manager
        self.model_manager.show()
        self.model_manager.raise_()

    def _manager_gone(self) -> None:
        # Deleted (with its window, or by a test): the downloads are the window's, so the next one shows them.
        self.model_manager = None

    def get_model(self, repo_id: str, quant: str) -> None:
        """Open the model manager on this model and start its download (or continue one left unfinished)."""
        self.open_manager()
        if self.model_manager is not None:
            self.model_manager.show_model(repo_id, quant)
            self.model_manager.start_download(repo_id, quant)
