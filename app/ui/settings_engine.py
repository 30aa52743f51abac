"""Settings -> Engine: "This computer" (llama.cpp here) or "A server" (an OpenAI-compatible one: its base URL,
API key, model from its list, context length, how long to wait), and the switcher that applies the choice to the
window's engine service (app.core.llm.remote does the talking)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QWidget,
)

from app.core.errors import UserError
from app.core.limits import MAX_CONTEXT, MIN_CONTEXT
from app.core.llm.engine import Engine, ModelInfo
from app.core.llm.protocol import ChatEngine
from app.core.llm.remote_config import (
    DEFAULT_CONTEXT,
    READ_TIMEOUT_RANGE,
    WAIT_SECONDS_RANGE,
    RemoteEngineError,
    RemoteServer,
    check_base_url,
)
from app.core.settings import Settings
from app.ui.background import run_in_pool
from app.ui.engine_bridge import EngineBridge

log = logging.getLogger(__name__)

FIRST_LISTED = "The first model the server lists"


def server_from_settings(settings: Settings) -> RemoteServer | None:
    """The server the settings choose, or None for this computer."""
    if settings.engine != "server" or not settings.remote_url:
        return None
    return RemoteServer(
        base_url=settings.remote_url,
        api_key=settings.remote_api_key,
        model=settings.remote_model,
        context_size=settings.remote_context_size or DEFAULT_CONTEXT,
        read_timeout=settings.remote_read_timeout,
        wait_seconds=settings.remote_wait_seconds,
    )


def preload_remote_engine(settings: Settings) -> None:
    """When the settings choose a server, import the OpenAI client now, before the window starts its threads:
    pydantic (under the client) imported on two threads at once, as huggingface_hub's pydantic probe may do on a
    pool thread, can fail with a partially initialized module."""
    if server_from_settings(settings) is not None:
        import app.core.llm.remote  # noqa: F401


def list_server_models(server: RemoteServer) -> list[str]:
    from app.core.llm.remote_server import list_models  # the OpenAI client is slow to import: only when asked

    return list_models(server)


class EngineSection(QGroupBox):
    """The dialog's Engine section. ``apply_to`` writes it into settings."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__("Where the model runs", parent)
        form = QFormLayout(self)
        self.local = QRadioButton("This computer")
        self.local.setToolTip("Run the model chosen in the model picker here, with llama.cpp.")
        self.server = QRadioButton("A server")
        self.server.setToolTip(
            "Use a model on another machine with OpenAI's API: llama-server, vLLM, Ollama, LM Studio or "
            "another LlamaDesk."
        )
        choice = QHBoxLayout()
        choice.addWidget(self.local)
        choice.addWidget(self.server)
        choice.addStretch(1)
        form.addRow("Run the model on", choice)

        self.url = QLineEdit(settings.remote_url)
        self.url.setPlaceholderText("http://gpu-box:8000/v1")
        self.url.setAccessibleName("Server address")
        form.addRow("Address (base URL)", self.url)
        self.api_key = QLineEdit(settings.remote_api_key)
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("none")
        self.api_key.setAccessibleName("Server API key")
        self.api_key.setToolTip(
            "Sent only to this address; kept in your settings file, readable by you alone."
        )
        form.addRow("API key", self.api_key)
        self.model = QComboBox()
        self.model.setAccessibleName("Server model")
        self.model.addItem(FIRST_LISTED, "")
        if settings.remote_model:
            self.model.addItem(settings.remote_model, settings.remote_model)
            self.model.setCurrentIndex(1)
        self.fetch = QPushButton("Get models")
        self.fetch.setAccessibleName("Get the server's models")
        self.fetch.clicked.connect(self.fetch_models)
        models = QHBoxLayout()
        models.addWidget(self.model, 1)
        models.addWidget(self.fetch)
        form.addRow("Model", models)
        self.context_size = QSpinBox()
        self.context_size.setRange(MIN_CONTEXT, MAX_CONTEXT)
        self.context_size.setSingleStep(1024)
        self.context_size.setValue(settings.remote_context_size or DEFAULT_CONTEXT)
        self.context_size.setAccessibleName("Server context size")
        self.context_size.setToolTip("Used when the server does not say its own (llama-server and vLLM do).")
        form.addRow("Context size", self.context_size)
        self.read_timeout = QSpinBox()
        self.read_timeout.setRange(*READ_TIMEOUT_RANGE)
        self.read_timeout.setSuffix(" s")
        self.read_timeout.setValue(settings.remote_read_timeout)
        self.read_timeout.setAccessibleName("Longest wait for the server")
        self.read_timeout.setToolTip("A connection that sends not a single byte for this long is given up.")
        form.addRow("Longest wait", self.read_timeout)
        self.wait_seconds = QSpinBox()
        self.wait_seconds.setRange(*WAIT_SECONDS_RANGE)
        self.wait_seconds.setSuffix(" s")
        self.wait_seconds.setValue(settings.remote_wait_seconds)
        self.wait_seconds.setAccessibleName("Longest wait for a token")
        self.wait_seconds.setToolTip(
            "A reply that brings no new text for this long, before its first token or between two, is ended; "
            "the server's keep-alive messages do not count. Raise it for a slow server or a long prompt."
        )
        form.addRow("Longest wait for a token", self.wait_seconds)
        self.status = QLabel()
        self.status.setWordWrap(True)
        form.addRow(self.status)

        self.server_fields: list[QWidget] = [
            self.url,
            self.api_key,
            self.model,
            self.fetch,
            self.context_size,
            self.read_timeout,
            self.wait_seconds,
        ]
        (self.server if settings.engine == "server" else self.local).setChecked(True)
        self.server.toggled.connect(self._update)
        self._update()

    def _update(self) -> None:
        for widget in self.server_fields:
            widget.setEnabled(self.server.isChecked())

    def edited_server(self) -> RemoteServer:
        """The server as entered; raises RemoteEngineError when the address is not one."""
        return RemoteServer(
            base_url=check_base_url(self.url.text()),
            api_key=self.api_key.text().strip(),
            context_size=self.context_size.value(),
            read_timeout=self.read_timeout.value(),
            wait_seconds=self.wait_seconds.value(),
        )

    @Slot()
    def fetch_models(self) -> None:
        """Fill the model list from the server's /v1/models, off the GUI thread."""
        try:
            server = self.edited_server()
        except RemoteEngineError as exc:
            self.status.setText(str(exc))
            return
        self.fetch.setEnabled(False)
        self.status.setText(f"Asking {server.url} for its models…")
        run_in_pool(lambda: list_server_models(server), self._on_models, self._on_models_failed)

    def _on_models(self, names: object) -> None:
        assert isinstance(names, list)
        chosen = self.model.currentData()
        self.model.clear()
        self.model.addItem(FIRST_LISTED, "")
        for name in names:
            self.model.addItem(str(name), str(name))
        self.model.setCurrentIndex(max(0, self.model.findData(chosen)))
        self.fetch.setEnabled(self.server.isChecked())
        self.status.setText(f"The server offers {len(names)} model{'s' if len(names) != 1 else ''}.")

    def _on_models_failed(self, error: BaseException) -> None:
        self.fetch.setEnabled(self.server.isChecked())
        if isinstance(error, UserError):
            self.status.setText(str(error))
        else:  # a bug: logged with its traceback, a sentence shown
            log.error("listing a server's models failed", exc_info=error)
            self.status.setText("The server's models could not be listed; see the log for details.")

    def restore_defaults(self) -> None:
        defaults = Settings()
        self.local.setChecked(defaults.engine == "local")
        self.context_size.setValue(defaults.remote_context_size)
        self.read_timeout.setValue(defaults.remote_read_timeout)
        self.wait_seconds.setValue(defaults.remote_wait_seconds)

    def apply_to(self, settings: Settings) -> None:
        url = self.url.text().strip()
        try:
            url = check_base_url(url) if url else ""
        except RemoteEngineError:
            url = (
                settings.remote_url
            )  # the switcher reports a bad address when it connects; keep the last good one
        use_server = self.server.isChecked() and bool(url)
        settings.engine = "server" if use_server else "local"
        settings.remote_url = url
        settings.remote_api_key = self.api_key.text().strip()
        settings.remote_model = str(self.model.currentData() or "")
        settings.remote_context_size = self.context_size.value()
        settings.remote_read_timeout = self.read_timeout.value()
        settings.remote_wait_seconds = self.wait_seconds.value()


# Said after a server could not be reached, when this computer's engine stays (and the settings say so again).
STAYED_LOCAL = (
    " This computer's model answers meanwhile, and Settings → Engine says so: choose the server there again once "
    "it is running."
)


class EngineSwitcher(QObject):
    """Puts the engine the settings choose in the window's engine service: a server's (connected first; if it
    cannot be reached, the engine in place stays and a sentence says why) or this computer's (then the model
    last used loads again).

    Signals:
        message(str): a sentence about a switch that failed
        switched(str): a note that the switch is done (any earlier failure's sentence no longer holds)
        stayed_local(): a server could not be reached, so this computer still answers: the settings should say
            so too, rather than name a server that is not the engine
    """

    message = Signal(str)
    switched = Signal(str)
    stayed_local = Signal()

    def __init__(
        self, bridge: EngineBridge, load_local: Callable[[], None], parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.load_local = load_local
        self.active: RemoteServer | None = None  # the server answering now; None: this computer

    @property
    def remote(self) -> bool:
        return self.active is not None

    def apply(self, settings: Settings) -> bool:
        """Switch if the settings choose another engine than the one in place; True when a switch was asked."""
        wanted = server_from_settings(settings)
        if wanted == self.active:
            return False
        previous, self.active = self.active, wanted
        if wanted is None:
            self.bridge.switch_engine(Engine(), None, self._on_local, lambda m: self._on_failed(m, previous))
            return True
        from app.core.llm.remote import RemoteEngine  # the OpenAI client is slow to import: only when used

        remote = RemoteEngine(wanted)

        def connect(_engine: ChatEngine, _cancel: object) -> ModelInfo:
            return remote.connect()

        self.bridge.switch_engine(remote, connect, self._on_server, lambda m: self._on_failed(m, previous))
        return True

    def _on_server(self, info: ModelInfo | None) -> None:
        if info is not None:
            self.switched.emit(f"{info.name} at {self.active.url if self.active else ''} answers now.")

    def _on_local(self, _info: ModelInfo | None) -> None:
        self.switched.emit("The model runs on this computer again.")
        self.load_local()

    def _on_failed(self, sentence: str, previous: RemoteServer | None) -> None:
        self.active = previous  # the engine in place stayed
        if previous is None:
            self.stayed_local.emit()
            if sentence:
                sentence += STAYED_LOCAL
        if sentence:
            self.message.emit(sentence)
        if previous is None and self.bridge.model is None:
            self.load_local()  # the server chosen at startup cannot be reached: this computer answers meanwhile
