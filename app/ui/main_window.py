"""The main window: conversations on the left, the transcript in the middle, the input at the bottom.

It builds the layout and wires the parts; the work is theirs. ``ConversationController`` sends and streams
replies through the core chat session, ``DocumentsController`` attaches and summarizes documents,
``ModelController`` picks and loads models, ``ConversationList`` is the sidebar. The window owns the history
store's connection (GUI thread) and the engine bridge, the window's client of the engine service.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, QSize, Qt
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME, __version__
from app.core import settings as settings_store
from app.core.errors import UserError
from app.core.history.store import HistoryStore
from app.core.llm.bindings import backend_description
from app.core.llm.saved_state_store import forget_conversations
from app.core.models.catalog import entry_for_file
from app.core.models.inventory import default_model
from app.core.modes import Mode, ModePreset, preset_for
from app.core.settings import Settings
from app.ui.banner import Banner
from app.ui.chat_input import InputBar
from app.ui.conversation import ConversationController
from app.ui.conversation_list import ConversationList
from app.ui.documents import DocumentsController
from app.ui.downloads import Downloads
from app.ui.engine_bridge import EngineBridge
from app.ui.library_choice import ConversationLibraries
from app.ui.model_picker import ModelController, window_parallel
from app.ui.serving import ServeController
from app.ui.settings_dialog import SettingsDialog
from app.ui.settings_engine import EngineSwitcher, preload_remote_engine
from app.ui.settings_models import loaded_model_file
from app.ui.theme import apply_theme
from app.ui.transcript.chat_view import ChatView
from app.ui.welcome import Welcome
from app.ui.window_minimum import WindowMinimum

log = logging.getLogger(__name__)

MODE_TIPS = {
    Mode.CHAT: "Chat: a helpful assistant",
    Mode.SUMMARIZE: "Summarize: drop documents here to summarize them and ask about them",
    Mode.CODE: "Code: answers in code blocks, with a code model when one is installed",
}
MODE_NOTE_MS = 12_000  # long enough to read the note and reach the button that undoes it
MINIMUM_SIZE = QSize(640, 480)  # below it the toolbar and the input row no longer fit beside the sidebar
CHAT_MINIMUM_HEIGHT = 156  # the transcript keeps room for a few lines of text, frame included
NO_MODEL_YET = (
    "No model is installed yet. Open a GGUF file (Ctrl+O), drop one onto this window, or get the starter "
    "model (98 MB) with the welcome card's button or: llamadesk models starter."
)


def mode_change_note(mode: Mode, previous: Mode) -> str:
    """What a mode button did to the conversation open, and how to undo it."""
    return (
        f"This conversation is now in {mode.label} mode (it was in {previous.label}): its next replies follow "
        f"{mode.label}'s instructions. Click {previous.label} to put it back."
    )


class MainWindow(QMainWindow):
    def __init__(
        self,
        *,
        settings: Settings,
        store: HistoryStore,
        bridge: EngineBridge | None = None,
        startup_messages: list[str] | None = None,
        initial_model: str | None = None,
        open_default_model: bool = True,
    ) -> None:
        super().__init__()
        preload_remote_engine(settings)  # before any thread of the window starts
        self.settings = settings
        self.store = store
        self.bridge = bridge or EngineBridge()
        self.mode = Mode(settings.mode) if settings.mode in {m.value for m in Mode} else Mode.CHAT
        self._closed = False
        self._mode_note = ""  # the status bar's note on a mode change, which holds for its conversation only
        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)
        self.resize(1100, 760)
        # Raised while the Library is docked beside the chat, so neither covers the other (window_minimum.py).
        self.window_minimum = WindowMinimum(self, MINIMUM_SIZE)

        status = self.statusBar()
        self.downloads = Downloads(self)  # the window's, so they go on while the model manager is closed
        self.models = ModelController(self.bridge, settings, self, status, self.downloads)
        self.banner = Banner()
        self.chat_view = ChatView()
        self.input_bar = InputBar()
        self.input = self.input_bar.input
        self.send_button = self.input_bar.send_button
        self.sidebar = ConversationList(store, self.show_error)
        self.conversation = ConversationController(
            bridge=self.bridge,
            store=store,
            settings=settings,
            chat_view=self.chat_view,
            input_bar=self.input_bar,
            status=status,
            preset=self.preset,
            mode=lambda: self.mode.value,
            other_work=lambda: self.documents.summarizing,
            documents_loading=lambda: self.documents.loading,
        )
        self.documents = DocumentsController(
            bridge=self.bridge,
            store=store,
            conversation=self.conversation,
            chat_view=self.chat_view,
            status=status,
            window=self,
        )
        # The Library panel (a dock, Library in the toolbar) and the libraries each conversation answers from
        self.libraries = ConversationLibraries(
            self,
            conversation=self.conversation,
            documents=self.documents,
            store=store,
            downloads=self.downloads,
            engine_activity=self.bridge.service.activity,
        )
        self.serving = ServeController(self.bridge, status, self)  # the switch that serves other apps
        # Settings → Engine: this computer's engine or a server's
        self.engine_switcher = EngineSwitcher(self.bridge, self._load_last_local_model, self)
        self._build_toolbar()
        # The card on an empty chat: the model, questions to try, one to get.
        self.welcome = Welcome(self, self.bridge, settings, self._welcome_wanted)
        self.input_bar.set_mode(self.mode)  # a window opening in Code mode says so before the first message
        self._build_central()
        self._build_shortcuts()
        self._wire()
        self.palette_for_messages = apply_theme(self._app(), settings.theme)
        self.chat_view.set_palette(self.palette_for_messages)
        if settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(settings.window_geometry.encode()))

        self.models.refresh()
        self.sidebar.refresh()
        self._reopen_last_conversation()
        self._update_controls()
        self.welcome.update()
        for message in [
            *(startup_messages or []),
            *([store.recovery_notice] if store.recovery_notice else []),
        ]:
            self.show_error(message)
        self.serving.apply(settings)
        default = default_model(settings.last_model, settings.imported_models) if open_default_model else None
        if not initial_model and open_default_model and self.engine_switcher.apply(settings):
            default, open_default_model = None, False  # a server answers instead (Settings → Engine)
        if initial_model:
            self.models.import_file(initial_model)
        elif default:
            self.load_model(str(default))
        elif open_default_model:
            self.show_error(NO_MODEL_YET)

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
            button.setToolTip(MODE_TIPS[mode])
            button.setChecked(mode == self.mode)
            button.setProperty("mode", mode.value)
            self.mode_buttons.addButton(button)
            toolbar.addWidget(button)
        self.mode_buttons.buttonClicked.connect(lambda b: self.set_mode(Mode(b.property("mode"))))
        toolbar.addSeparator()
        toolbar.addWidget(self.models.picker)
        self.models_action = self._action(toolbar, "Get models…", self.models.open_manager)
        self.models_action.setToolTip("Models that suit this computer: fit, speed, downloads")
        self.open_action = self._action(toolbar, "Open GGUF file…", self.models.choose_file)
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        toolbar.addAction(self.libraries.action)
        spacer = QWidget()
        spacer.setSizePolicy(
            spacer.sizePolicy().horizontalPolicy().Expanding, spacer.sizePolicy().verticalPolicy()
        )
        toolbar.addWidget(spacer)
        self.settings_action = self._action(toolbar, "Settings", self.open_settings)
        self.about_action = self._action(toolbar, "About", self.show_about)

    def _action(self, toolbar: QToolBar, label: str, slot: Callable[[], None]) -> QAction:
        action = QAction(label, self)
        action.triggered.connect(slot)
        toolbar.addAction(action)
        return action

    def _build_central(self) -> None:
        splitter = QSplitter()
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self.sidebar)
        center = QWidget()
        column = QVBoxLayout(center)
        column.setContentsMargins(4, 8, 8, 8)
        column.addWidget(self.banner)
        column.addWidget(self.welcome.area)
        # The conversation keeps room for a few lines however small the window: the welcome card scrolls first.
        self.chat_view.setMinimumHeight(CHAT_MINIMUM_HEIGHT)
        column.addWidget(self.chat_view, 1)
        column.addWidget(self.input_bar)
        splitter.addWidget(center)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 840])
        self.setCentralWidget(splitter)
        QWidget.setTabOrder(self.sidebar.list, self.input)
        self.input.setFocus()

    def _build_shortcuts(self) -> None:
        for keys, slot in (
            (QKeySequence(Qt.Key.Key_Escape), self.stop_everything),
            (QKeySequence("Ctrl+N"), self.new_conversation),
            (QKeySequence("Ctrl+K"), self.sidebar.focus_search),
            (QKeySequence("Ctrl+,"), self.open_settings),
            (QKeySequence("Ctrl+Q"), self.close),
        ):
            QShortcut(keys, self).activated.connect(slot)

    def _wire(self) -> None:
        self.input_bar.send_requested.connect(self.send)
        self.input_bar.stop_requested.connect(self.stop)
        self.input_bar.attach_requested.connect(self.documents.choose)
        self.sidebar.new_requested.connect(self.new_conversation)
        self.sidebar.conversation_chosen.connect(self.open_conversation)
        self.sidebar.deleted.connect(self._on_deleted)
        self.models.message.connect(self.show_error)
        self.models.template_refused.connect(
            lambda sentence, path: self.show_error(
                sentence, "Choose a chat template…", lambda: self.models.choose_template(path)
            )
        )
        self.models.settings_changed.connect(self._save_settings)
        self.models.local_engine_wanted.connect(lambda: self.engine_switcher.apply(self.settings))
        self.bridge.model_loaded.connect(lambda _info: self._update_controls())
        self.bridge.load_failed.connect(lambda _message: self._update_controls())
        self.conversation.message.connect(self.show_error)
        self.chat_view.copied.connect(lambda note: self.statusBar().showMessage(note, 3000))
        self.sidebar.exported.connect(lambda note: self.statusBar().showMessage(note, 8000))
        self.conversation.sent.connect(self.banner.hide)
        self.conversation.conversation_changed.connect(self._on_conversation_changed)
        self.conversation.busy_changed.connect(self._update_controls)
        self.documents.message.connect(self.show_error)
        self.documents.attached.connect(self._on_conversation_changed)
        self.documents.busy_changed.connect(self._update_controls)
        self.libraries.message.connect(self.show_error)
        self.serving.message.connect(self.show_error)
        self.engine_switcher.message.connect(self.show_error)
        self.engine_switcher.stayed_local.connect(self._server_unreachable)
        self.engine_switcher.switched.connect(self._engine_switched)
        self.serving.conversation_saved.connect(self._served_conversation_saved)
        self.conversation.sent.connect(self.welcome.update)
        self.conversation.conversation_changed.connect(self.welcome.update)
        self.mode_buttons.buttonClicked.connect(lambda _button: self.welcome.update())
        self.welcome.prompt_chosen.connect(self._ask)
        self.welcome.use_requested.connect(self.load_model)
        self.welcome.get_requested.connect(self.models.get_model)
        self.downloads.failed.connect(self.welcome.download_failed)

    # -- what the parts share ----------------------------------------------------------------------------------

    @property
    def conversation_id(self) -> int | None:
        return self.conversation.conversation_id

    def _engine_switched(self, note: str) -> None:
        self.banner.hide()  # a sentence about the engine before the switch no longer holds
        self.statusBar().showMessage(note, 8000)

    def show_error(self, text: str, action_label: str = "", action: Callable[[], None] | None = None) -> None:
        self.banner.show_message(text, action_label, action)

    def preset(self) -> ModePreset:
        """The mode's preset for the loaded model (the starter has its own in Chat), with the person's changes."""
        overrides = self.settings.mode_overrides.get(self.mode.value, {})
        return preset_for(self.mode, overrides, model_id=self.model_catalog_id())

    def model_catalog_id(self) -> str | None:
        model = self.bridge.model
        entry = entry_for_file(model.path) if model is not None else None
        return entry.id if entry is not None else None

    def _update_controls(self) -> None:
        self.input_bar.set_generating(self.bridge.is_generating or self.documents.summarizing)

    def _on_conversation_changed(self) -> None:
        if self._mode_note and self.statusBar().currentMessage() == self._mode_note:
            self.statusBar().clearMessage()  # it spoke of the conversation open before
        self.sidebar.select(self.conversation_id)
        self.sidebar.refresh()
        self._update_controls()

    def send(self) -> None:
        self.conversation.send()

    def _ask(self, text: str) -> None:
        self.input.setPlainText(text)
        self.send()  # without a model the banner says so, and the question waits in the input

    def _welcome_wanted(self) -> bool:
        """An empty chat in Chat mode: nothing said yet, in a conversation not stored."""
        return self.mode is Mode.CHAT and self.conversation_id is None and not self.chat_view.messages

    def stop(self) -> None:
        self.documents.stop()
        self.conversation.stop()

    def stop_everything(self) -> None:
        """Esc: the reply or summary under way, and any file being read (loading a model stops only the former)."""
        self.stop()
        self.documents.stop_reading()

    def load_model(self, path: str) -> None:
        self.stop()
        self.models.load(path)
        self._update_controls()

    def _load_last_local_model(self) -> None:
        """Back on this computer (Settings → Engine): the model used last loads again."""
        default = default_model(self.settings.last_model, self.settings.imported_models)
        if default:
            self.load_model(str(default))

    # -- modes -------------------------------------------------------------------------------------------------

    def set_mode(self, mode: Mode) -> None:
        """The mode applies to the open conversation, as a preset does in the peers' windows; said in the status
        bar and on the conversation's row, and undone by clicking the mode it had."""
        previous = self.mode
        self._show_mode(mode)
        self.settings.mode = mode.value
        self._save_settings()
        if self.conversation_id is not None and mode is not previous:
            try:
                self.store.update_conversation(self.conversation_id, mode=mode.value)
            except UserError as exc:
                self.show_error(str(exc))
            else:
                self.sidebar.refresh()  # the row's second line names the mode
                self._mode_note = mode_change_note(mode, previous)
                self.statusBar().showMessage(self._mode_note, MODE_NOTE_MS)
        if mode == Mode.CODE and not self.bridge.remote:  # a server's model stays: the picker alone leaves it
            code_model = self.models.code_model()
            current = str(self.bridge.model.path) if self.bridge.model else None
            if code_model and code_model != current:
                self.load_model(code_model)

    def _show_mode(self, mode: Mode) -> None:
        self.mode = mode
        self.conversation.session.mode = mode.value
        for button in self.mode_buttons.buttons():
            button.setChecked(button.property("mode") == mode.value)
        self.input_bar.set_mode(mode)

    # -- conversations -----------------------------------------------------------------------------------------

    def new_conversation(self) -> None:
        self.documents.abandon_summary()
        self.conversation.show_new()
        self.documents.clear()
        self.input.setFocus()

    def open_conversation(self, conversation_id: int, *, follow_model: bool = True) -> None:
        """Show a stored conversation in its mode; with ``follow_model``, load the model it was last held with."""
        self.documents.abandon_summary()
        query = self.sidebar.query()
        conversation = self.conversation.show(conversation_id, query.split() if query else [])
        if conversation is None:
            return
        self.documents.load(conversation_id)
        if conversation.mode in {m.value for m in Mode} and conversation.mode != self.mode.value:
            self._show_mode(Mode(conversation.mode))
        if not follow_model or self.bridge.remote:  # a server's model stays: the picker alone leaves it
            return
        current = str(self.bridge.model.path) if self.bridge.model else None
        if conversation.model and conversation.model != current and Path(conversation.model).is_file():
            self.load_model(conversation.model)

    def _reopen_last_conversation(self) -> None:
        """At start, the conversation open when the window last closed, as the person left it. One deleted since,
        or a history that cannot be read, leaves the new chat of a first start, with nothing to say about it."""
        conversation_id = self.settings.last_conversation_id
        if conversation_id <= 0:
            return
        try:
            live = self.store.get_conversation(conversation_id).deleted is None
        except UserError:
            log.info(
                "the conversation open at the last close (%d) is gone; starting on a new chat",
                conversation_id,
            )
            return
        if live:
            # The model to load is the one used last (below, in __init__), which is this conversation's: loading
            # its recorded model here as well would load a model twice, or a local one over a server's.
            self.open_conversation(conversation_id, follow_model=False)

    def _on_deleted(self, conversation_id: int) -> None:
        if conversation_id == self.conversation_id:
            self.new_conversation()

    # -- drag and drop -----------------------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        self.handle_dropped_files([url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()])
        event.acceptProposedAction()

    def handle_dropped_files(self, paths: list[str]) -> None:
        models = [p for p in paths if p.lower().endswith(".gguf")]
        others = [p for p in paths if not p.lower().endswith(".gguf")]
        if models:
            self.models.import_file(models[0])
        if others:
            self.attach_documents(others)

    def attach_documents(self, paths: list[str]) -> None:
        """Attach in the mode the window is in: Summarize mode summarizes them, Chat and Code only attach."""
        self.documents.attach(paths)

    # -- settings and about ------------------------------------------------------------------------------------

    def open_settings(self) -> None:
        loaded_file = loaded_model_file(self.bridge.model, self.models.pending_model)
        dialog = SettingsDialog(
            self.settings, self, model_id=self.model_catalog_id(), loaded_model=loaded_file
        )
        dialog.serve_section.show_busy(self.serving.busy)
        self.serving.busy_changed.connect(dialog.serve_section.show_busy)
        if not dialog.exec():
            return
        updated = dialog.result_settings()
        reload_needed = (
            updated.context_size,
            updated.threads,
            updated.gpu_layers,
            window_parallel(updated),
        ) != (
            self.settings.context_size,
            self.settings.threads,
            self.settings.gpu_layers,
            window_parallel(self.settings),  # serving turned on or off, or another number answered together
        )
        theme_changed = updated.theme != self.settings.theme
        template_changed = updated.chat_templates.get(loaded_file or "") != self.settings.chat_templates.get(
            loaded_file or ""
        )
        # The parts hold this settings object: change it in place.
        for field in dataclasses.fields(updated):
            setattr(self.settings, field.name, getattr(updated, field.name))
        self._save_settings()
        self.serving.apply(self.settings)
        switched = self.engine_switcher.apply(self.settings)
        if theme_changed:
            self.palette_for_messages = apply_theme(self._app(), updated.theme)
            self.chat_view.set_palette(self.palette_for_messages)
        local_model = None if switched or self.engine_switcher.remote else self.bridge.model
        if template_changed and loaded_file and not (switched or self.engine_switcher.remote):
            self.load_model(loaded_file)  # with the chat template now in the settings (Settings → Models)
        elif reload_needed and local_model is not None:
            self.load_model(str(local_model.path))

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            f"About {APP_NAME}",
            f"<h3>{APP_NAME} {__version__}</h3>"
            "<p>Run LLaMA-family language models on your own computer.</p>"
            f"<p><small>{backend_description()}</small></p>",
        )

    def _server_unreachable(self) -> None:
        """The server the settings chose could not be reached and this computer still answers: the settings say
        this computer again, so Settings and the window never disagree about which engine runs."""
        if self.settings.engine != "local":
            self.settings.engine = "local"
            self._save_settings()

    def _save_settings(self) -> None:
        try:
            settings_store.save(self.settings)
        except OSError as exc:
            self.statusBar().showMessage(f"Settings could not be saved ({exc.strerror}).", 8000)

    def _served_conversation_saved(self, _conversation_id: int) -> None:
        # Saves still queued when the window closed arrive after its history is closed.
        if not self._closed:
            self.sidebar.refresh()

    # -- closing -----------------------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._closed:  # Qt may deliver a second close (window closed, then the application quits)
            super().closeEvent(event)
            return
        self._closed = True
        self.documents.stop_reading()  # a reader process is not left running, nor waited for
        self.documents.abandon_summary()
        self.conversation.abandon_reply()
        self.libraries.shutdown()  # an index run stops after its passage; nothing waits for it
        # Neither waits: the server stops and the downloads pause on their own threads.
        self.serving.shutdown()
        self.downloads.shutdown()
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64().data()).decode()
        self.settings.last_conversation_id = self.conversation_id or 0  # reopened at the next start
        self._save_settings()
        self.bridge.shutdown()
        try:
            trashed = [conversation.uuid for conversation in self.store.list_trash()]
            self.store.purge_trash()
            forget_conversations(trashed)  # their saved llama.cpp states go with them
        except UserError:
            log.warning("the trash could not be emptied")
        self.store.close()
        super().closeEvent(event)
