"""Short jobs (validating a dropped model, reading a document, a hardware probe) on Qt's thread pool; the
result, or the exception, comes back on the GUI thread (the way Picard runs its background work)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from app.core.errors import UserError

log = logging.getLogger(__name__)


class _Job(QRunnable):
    def __init__(self, relay: _JobRelay, func: Callable[[], Any]) -> None:
        super().__init__()
        self.relay = relay
        self.func = func

    def run(self) -> None:
        try:
            result = self.func()
        except Exception as exc:
            if not isinstance(exc, UserError):
                log.exception("background job failed")
            self._deliver(self.relay.failed, exc)
        else:
            self._deliver(self.relay.succeeded, result)

    @staticmethod
    def _deliver(signal: Any, value: object) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the application is quitting and the receiver is gone: nobody to tell
            log.debug("background job finished after its receiver was deleted")


class _JobRelay(QObject):
    succeeded = Signal(object)
    failed = Signal(object)


_live_relays: set[_JobRelay] = set()


def run_in_pool(
    func: Callable[[], Any],
    on_result: Callable[[Any], None],
    on_error: Callable[[BaseException], None],
    pool: QThreadPool | None = None,
) -> None:
    """Run a short job (file import, extraction, probe) on Qt's pool (or ``pool``: one of a single thread runs
    its jobs one after another); the result or exception comes back on the GUI thread."""
    # A result for a widget that is gone (a dialog closed while its job ran) is dropped, not delivered to it:
    # the relay is the receiver's child, so Qt deletes it with the receiver and the job finds nobody to tell.
    receiver = getattr(on_result, "__self__", None)
    relay = _JobRelay(receiver if isinstance(receiver, QObject) else None)
    _live_relays.add(relay)
    relay.destroyed.connect(lambda: _live_relays.discard(relay))

    def done_ok(result: Any) -> None:
        _live_relays.discard(relay)
        on_result(result)

    def done_error(exc: BaseException) -> None:
        _live_relays.discard(relay)
        on_error(exc)

    relay.succeeded.connect(done_ok)
    relay.failed.connect(done_error)
    (pool or QThreadPool.globalInstance()).start(_Job(relay, func))
