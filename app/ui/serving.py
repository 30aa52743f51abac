"""The window's switch "Let other apps on this computer use the loaded model": the API server (``app.core.serve``)
run on the window's own engine service, as a client without priority, so the person's requests go ahead of other
apps' queued ones.

The server starts and stops off the GUI thread (``app.core.serve.switch``): meanwhile the status bar says so
and the switch in Settings waits; once it runs, the status bar shows the base URL with a button to copy it,
and a server that could not start is a sentence in the banner.

While the window uses a server's model (Settings → Engine), the API stays up but lends that model to nobody:
every request, ``/health`` included, is answered 503 (``app.core.serve.app``). The status bar says so instead of
offering the address, until a model on this computer answers again.

A model switch in the window stops the replies other apps are waiting for (the new model would answer them
otherwise, or the switch would wait behind a long reply) and says so; those apps get an error and can ask again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QApplication, QHBoxLayout, QLabel, QStatusBar, QToolButton, QWidget

from app.core.errors import UserError
from app.core.llm.engine import ModelInfo
from app.core.llm.service import EngineService
from app.core.serve.address import LOOPBACK
from app.core.serve.switch import FAILED, OFF, SERVING, STARTING, STOPPING, ServerStatus, ServerSwitch
from app.core.settings import Settings
from app.ui.background import keep_until_deleted
from app.ui.engine_bridge import EngineBridge

if TYPE_CHECKING:
    from app.core.serve.runner import ApiServer

log = logging.getLogger(__name__)

PORT_HINT = "choose another port in Settings, under Other apps."
MODEL_SWITCH = (
    "The server stopped this reply: LlamaDesk is switching to another model. Ask again in a moment."
)
STARTING_TEXT = "Starting the server for other apps..."
STOPPING_TEXT = "Stopping the server for other apps..."
NOT_SHARED_TEXT = "Other apps: not served while LlamaDesk uses a server"

# The port, whether other apps' conversations are kept, and the web apps allowed to call it from a browser.
ServeWish = tuple[int, bool, tuple[str, ...]]


class _Relay(QObject):
    """Emitted on by the switch's thread and the history's writer, which may outlive the window: kept
    (``keep_until_deleted``) and never deleted, since a QObject deleted while another thread emits on it
    crashes the process."""

    status = Signal(object)  # ServerStatus
    saved = Signal(int)
    save_failed = Signal(str)


class ServeController(QObject):
    """Starts and stops the server as the settings say, never on the GUI thread.

    Signals:
        message(str): a sentence for the window's banner (the port is taken, saving failed).
        conversation_saved(int): a served request was kept in the history (its conversation id).
        busy_changed(str): what the server is doing ("Starting...", "Stopping..."); "" once on or off.
    """

    message = Signal(str)
    conversation_saved = Signal(int)
    busy_changed = Signal(str)

    def __init__(self, bridge: EngineBridge, status: QStatusBar, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._status = status
        self._base_url: str | None = None
        self._state = ServerStatus(OFF)
        self.busy = ""  # what the server is doing now, while it starts or stops
        self._relay = _Relay()
        keep_until_deleted(self._relay)
        self._relay.status.connect(self._on_status)
        self._relay.saved.connect(self.conversation_saved)
        self._relay.save_failed.connect(self._on_save_failed)
        self._switch: ServerSwitch[ServeWish] = ServerSwitch(
            _server_starter(bridge.service, self._relay), self._relay.status.emit
        )
        self._warned_save = False
        bridge.load_started.connect(self._on_load_started)
        # The API refuses requests while a server's model answers: the entry follows the engine in place.
        bridge.model_loaded.connect(self._on_engine_changed)
        bridge.engine_switched.connect(self._on_engine_changed)
        self.indicator = QWidget()
        row = QHBoxLayout(self.indicator)
        row.setContentsMargins(0, 0, 0, 0)
        self.address = QLabel()
        self.address.setTextInteractionFlags(self.address.textInteractionFlags().TextSelectableByMouse)
        self.address.setAccessibleName("Address other apps use")
        self.copy = QToolButton()
        self.copy.setText("Copy")
        self.copy.setAccessibleName("Copy the address other apps use")
        self.copy.clicked.connect(self.copy_url)
        row.addWidget(self.address)
        row.addWidget(self.copy)
        status.addPermanentWidget(self.indicator)
        self.indicator.hide()

    @property
    def server(self) -> ApiServer | None:
        """The server running now, if any."""
        return self._switch.server

    @property
    def base_url(self) -> str | None:
        """The address other apps use, once the server answers there."""
        return self._base_url

    @property
    def shared(self) -> bool:
        """Whether other apps get answers at ``base_url`` now: not while the window uses a server's model."""
        return self._base_url is not None and not self.bridge.remote

    @property
    def answered_together(self) -> int:
        """How many requests the model on this computer answers at once, as it was loaded; 1 without one."""
        model = self.bridge.model
        return model.parallel if isinstance(model, ModelInfo) and not self.bridge.remote else 1

    def apply(self, settings: Settings) -> None:
        """Serve, stop, or restart on another port or for other web apps, as ``settings`` now say; returns at
        once."""
        wish = (settings.serve_port, settings.serve_save_history, tuple(settings.serve_allowed_origins))
        self._switch.want(wish if settings.serve_enabled else None)

    def stop(self) -> None:
        """Stop serving: other apps' replies end and the port is freed, off the GUI thread."""
        self._switch.want(None)

    def shutdown(self) -> None:
        """The window closes: the server stops on the switch's thread, which nobody waits for."""
        self._switch.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Until the server has started or stopped as last asked (tests; the window never waits for it)."""
        return self._switch.wait(timeout)

    def copy_url(self) -> None:
        if self._base_url is not None:
            QApplication.clipboard().setText(self._base_url)
            self._status.showMessage(f"Copied {self._base_url}", 3000)

    @Slot(object)
    def _on_status(self, status: ServerStatus) -> None:
        self._state = status
        self.busy = {STARTING: STARTING_TEXT, STOPPING: STOPPING_TEXT}.get(status.state, "")
        self._base_url = status.base_url if status.state == SERVING else None
        self._show()
        self.busy_changed.emit(self.busy)
        if status.state == FAILED:
            self.message.emit(status.sentence)

    @Slot(object)
    def _on_engine_changed(self, _model: object) -> None:
        self._show()

    def _show(self) -> None:
        """The status bar's entry: the address while other apps get answers there, what it does otherwise."""
        status = self._state
        if status.state == SERVING and self.bridge.remote:
            self.address.setText(NOT_SHARED_TEXT)
            self.address.setToolTip(
                f"{status.base_url} answers other apps' requests with an error (503) while LlamaDesk uses a "
                "model on another machine, which it does not lend. Choose a model on this computer in the "
                "model picker to serve them again."
            )
        elif status.state == SERVING:
            together = self.answered_together
            self.address.setText(
                f"Other apps: {status.base_url}" + (f" · {together} at once" if together > 1 else "")
            )
            self.address.setToolTip(
                "Give this address to an OpenAI-compatible app as its base URL."
                + (
                    f" The model answers up to {together} requests together (Settings → Other apps)."
                    if together > 1
                    else ""
                )
            )
        elif status.busy:
            self.address.setText(self.busy)
            self.address.setToolTip("")
        self.copy.setVisible(self.shared)
        self.indicator.setVisible(status.state == SERVING or status.busy)

    @Slot(str)
    def _on_load_started(self, _path: str) -> None:
        server = self.server
        if server is None:
            return
        stopped = server.stop_replies(MODEL_SWITCH)
        if stopped:
            replies = "reply" if stopped == 1 else "replies"
            self._status.showMessage(
                f"Stopped {stopped} {replies} to other apps to switch models; they can ask again.", 8000
            )

    @Slot(str)
    def _on_save_failed(self, sentence: str) -> None:
        if not self._warned_save:  # once: every request would say the same
            self._warned_save = True
            self.message.emit(f"Other apps' conversations are not being kept: {sentence}")


def _server_starter(service: EngineService, relay: _Relay) -> Callable[[ServeWish], ApiServer]:
    """How the switch's thread starts a server: nothing of the window but the engine service and the relay."""

    def start(wish: ServeWish) -> ApiServer:
        # Imported here, on the switch's thread: the server's libraries load only when the switch is on.
        from app.core.serve.app import ServeState
        from app.core.serve.history import ServedHistory
        from app.core.serve.runner import ApiServer, listen

        port, save_history, allowed_origins = wish
        try:
            listener = listen(LOOPBACK, port, port_hint=PORT_HINT)
        except UserError as exc:
            raise UserError(f"Other apps cannot use the model: {exc}") from None
        history = (
            ServedHistory(saved=relay.saved.emit, failed=relay.save_failed.emit) if save_history else None
        )
        try:
            state = ServeState(service.client("api"), on_served=history.record if history else None)
            server = ApiServer(
                state.client,
                listener,
                host=LOOPBACK,
                allowed_origins=allowed_origins,
                state=state,
                on_stopped=history.close if history else None,
            )
        except BaseException:
            listener.close()
            if history is not None:
                history.close()
            raise
        server.start()  # when it does not start, it stops itself, and the history closes with it
        return server

    return start
