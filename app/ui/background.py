"""Short jobs (validating a dropped model, reading a document, a hardware probe) on Qt's thread pool; the
result, or the exception, comes back on the GUI thread (the way Picard runs its background work)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from app.core.errors import Cancelled, UserError

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
            if not isinstance(exc, (UserError, Cancelled)):  # a sentence, or a stop the person asked for
                log.exception("background job failed")
            self._deliver(self.relay.failed, exc)
        else:
            self._deliver(self.relay.succeeded, result)
        finally:
            # Only now, the emit done: the deletion is queued behind the delivery, on the relay's (GUI) thread.
            with contextlib.suppress(RuntimeError):
                self.relay.deleteLater()

    @staticmethod
    def _deliver(signal: Any, value: object) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the application is quitting and the receiver is gone: nobody to tell
            log.debug("background job finished after its receiver was deleted")


class _JobRelay(QObject):
    succeeded = Signal(object)
    failed = Signal(object)


# QObjects that other threads emit on, held with no Qt parent until Qt deletes them: an object deleted by the
# GUI thread (with its parent, or by Python's collector) while another thread emits on it crashes the process (a
# relay deleted along with its widget did). A relay is deleted by its own thread after its last emit; an object
# that thread may outlive is never deleted.
_kept: set[QObject] = set()


def keep_until_deleted(emitter: QObject) -> None:
    """Hold ``emitter`` (a QObject with no parent that another thread emits on) until Qt deletes it."""
    _kept.add(emitter)
    emitter.destroyed.connect(lambda: _kept.discard(emitter))


def run_in_pool(
    func: Callable[[], Any],
    on_result: Callable[[Any], None],
    on_error: Callable[[BaseException], None],
    pool: QThreadPool | None = None,
    *,
    owner: QObject | None = None,
) -> None:
    """Run a short job (file import, extraction, probe) on Qt's pool (or ``pool``: one of a single thread runs
    its jobs one after another); the result or exception comes back on the GUI thread, unless ``owner`` (by
    default the object ``on_result`` is a method of) has been deleted meanwhile."""
    # A result for a widget that is gone (a dialog closed while its job ran) is dropped, not delivered to it.
    # The check runs on the GUI thread, the only one that deletes widgets, so it cannot race the deletion.
    receiver = owner if owner is not None else getattr(on_result, "__self__", None)
    relay = _JobRelay()
    keep_until_deleted(relay)

    def receiver_gone() -> bool:
        return isinstance(receiver, QObject) and not shiboken6.isValid(receiver)

    def done_ok(result: Any) -> None:
        if receiver_gone():
            log.debug("a background job's result arrived after its window was closed")
            return
        on_result(result)

    def done_error(exc: BaseException) -> None:
        if receiver_gone():
            log.debug("a background job's failure arrived after its window was closed")
            return
        on_error(exc)

    relay.succeeded.connect(done_ok)
    relay.failed.connect(done_error)
    (pool or QThreadPool.globalInstance()).start(_Job(relay, func))
