"""The window's downloads: ``app.core.models.downloads.controller.DownloadController`` (its threads, pause and
cancel) with its callbacks turned into Qt signals on the GUI thread.

The main window owns one, so the model manager only shows it: closing the dialog stops nothing, a dialog
opened later shows every download running, and quitting asks each to pause without waiting for any.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QObject, Signal

from app.core.models.downloads.controller import DownloadController
from app.core.models.downloads.downloader import Downloader, DownloadResult
from app.core.models.downloads.queue import DownloadQueue
from app.ui.background import keep_until_deleted


class _Relay(QObject):
    """Emitted on by the download threads, which may outlive the window: kept (``keep_until_deleted``) and
    never deleted, since a QObject deleted while another thread emits on it crashes the process."""

    progress = Signal(object)  # DownloadProgress
    changed = Signal()
    installed = Signal(str)
    failed = Signal(str, str)


class Downloads(QObject):
    """The downloads of one window. The controller is made on first use (``controller``), with a
    ``Downloader`` for ``endpoint`` (tests use a local Hub) unless one is given.

    Signals (on the GUI thread):
        progress(DownloadProgress): a running download's latest report.
        changed(): a download started, was planned, or ended: lists of downloads are out of date.
        installed(str): the path of a model just downloaded and verified (the first part of a split one).
        failed(str, str): a download of this repository could not start or stopped; the sentence.
    """

    progress = Signal(object)
    changed = Signal()
    installed = Signal(str)
    failed = Signal(str, str)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        endpoint: str | None = None,
        downloader: Downloader | None = None,
    ) -> None:
        super().__init__(parent)
        self._endpoint = endpoint
        self._downloader = downloader
        self._controller: DownloadController | None = None
        self._relay = _Relay()
        keep_until_deleted(self._relay)
        self._relay.progress.connect(self.progress)
        self._relay.changed.connect(self.changed)
        self._relay.installed.connect(self.installed)
        self._relay.failed.connect(self.failed)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    @property
    def controller(self) -> DownloadController:
        if self._controller is None:
            downloader = self._downloader
            if downloader is None:
                endpoint = self._endpoint
                downloader = Downloader(DownloadQueue(), endpoint=endpoint) if endpoint else Downloader()
            relay = self._relay

            def installed(result: DownloadResult) -> None:
                relay.installed.emit(str(result.path))

            self._controller = DownloadController(
                downloader,
                on_progress=relay.progress.emit,
                on_changed=relay.changed.emit,
                on_installed=installed,
                on_failed=relay.failed.emit,
            )
        return self._controller

    def shutdown(self) -> None:
        """Quitting: every download is asked to pause, and none is waited for (see the controller)."""
        if self._controller is not None:
            self._controller.shutdown()
