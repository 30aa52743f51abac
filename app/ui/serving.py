"""The window's switch "Let other apps on this computer use the loaded model": the API server (``app.core.serve``)
run on the window's own engine service, as a client without priority, so the person's requests go ahead of other
apps' queued ones. While it runs, the status bar shows the base URL with a button to copy it.

A model switch in the window stops the replies other apps are waiting for (the new model would answer them
otherwise, or the switch would wait behind a long reply) and says so; those apps get an error and can ask again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QApplication, QHBoxLayout, QLabel, QStatusBar, QToolButton, QWidget

from app.core.errors import UserError
from app.core.serve.address import LOOPBACK
from app.core.settings import Settings
from app.ui.engine_bridge import EngineBridge

if TYPE_CHECKING:
    from app.core.serve.history import ServedHistory
    from app.core.serve.runner import ApiServer

log = logging.getLogger(__name__)

PORT_HINT = "choose another port in Settings, under Other apps."
MODEL_SWITCH = (
    "The server stopped this reply: LlamaDesk is switching to another model. Ask again in a moment."
)


class ServeController(QObject):
    """Starts and stops the server as the settings say.

    Signals:
        message(str): a sentence for the window's banner (the port is taken, saving failed).
        conversation_saved(int): a served request was kept in the history (its conversation id).
    """

    message = Signal(str)
    conversation_saved = Signal(int)
    _saved = Signal(int)  # emitted on the history's writer thread, so queued to the GUI thread
    _save_failed = Signal(str)

    def __init__(self, bridge: EngineBridge, status: QStatusBar, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._status = status
        self.server: ApiServer | None = None
        self._history: ServedHistory | None = None
        self._running_as: tuple[int, bool] | None = None  # (port, save history) of the server running
        self._saved.connect(self.conversation_saved)
        self._save_failed.connect(self._on_save_failed)
        self._warned_save = False
        bridge.load_started.connect(self._on_load_started)
        self.indicator = QWidget()
        row = QHBoxLayout(self.indicator)
        row.setContentsMargins(0, 0, 0, 0)
        self.address = QLabel()
        self.address.setTextInteractionFlags(self.address.textInteractionFlags().TextSelectableByMouse)
        self.address.setAccessibleName("Address other apps use")
        copy = QToolButton()
        copy.setText("Copy")
        copy.setAccessibleName("Copy the address other apps use")
        copy.clicked.connect(self.copy_url)
        row.addWidget(self.address)
        row.addWidget(copy)
        status.addPermanentWidget(self.indicator)
        self.indicator.hide()

    @property
    def base_url(self) -> str | None:
        return self.server.base_url if self.server is not None else None

    def apply(self, settings: Settings) -> None:
        """Serve, stop, or restart on another port, as ``settings`` now say."""
        wanted = (settings.serve_port, settings.serve_save_history) if settings.serve_enabled else None
        if wanted == self._running_as:
            return
        self.stop()
        if wanted is not None:
            self._start(*wanted)

    def _start(self, port: int, save_history: bool) -> None:
        # Imported here: the server's libraries load only when the switch is on.
        from app.core.serve.app import ServeState
        from app.core.serve.history import ServedHistory
        from app.core.serve.runner import ApiServer, listen

        try:
            listener = listen(LOOPBACK, port, port_hint=PORT_HINT)
        except UserError as exc:
            self.message.emit(f"Other apps cannot use the model: {exc}")
            return
        if save_history:
            self._history = ServedHistory(saved=self._saved.emit, failed=self._save_failed.emit)
        state = ServeState(
            self.bridge.service.client("api"), on_served=self._history.record if self._history else None
        )
        server = ApiServer(state.client, listener, host=LOOPBACK, state=state)
        try:
            server.start()
        except UserError as exc:
            self._close_history()
            self.message.emit(str(exc))
            return
        self.server = server
        self._running_as = (port, save_history)
        self.address.setText(f"Other apps: {server.base_url}")
        self.address.setToolTip("Give this address to an OpenAI-compatible app as its base URL.")
        self.indicator.show()

    def stop(self) -> None:
        """Stop serving: other apps' replies end, the port is free again."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        self._close_history()
        self._running_as = None
        self.indicator.hide()

    def _close_history(self) -> None:
        if self._history is not None:
            self._history.close()
            self._history = None

    def copy_url(self) -> None:
        if self.server is not None:
            QApplication.clipboard().setText(self.server.base_url)
            self._status.showMessage(f"Copied {self.server.base_url}", 3000)

    @Slot(str)
    def _on_load_started(self, _path: str) -> None:
        if self.server is None:
            return
        stopped = self.server.stop_replies(MODEL_SWITCH)
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
