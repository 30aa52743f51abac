"""Short jobs on Qt's pool: results come back on the GUI thread, and never to a widget that is gone."""

from __future__ import annotations

import threading
import time

import pytest
import shiboken6
from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.qtbot import QtBot

from app.ui import background
from app.ui.background import run_in_pool

pytestmark = pytest.mark.gui


class Receiver(QLabel):
    def __init__(self) -> None:
        super().__init__()
        self.results: list[object] = []
        self.threads: list[int] = []

    def on_result(self, value: object) -> None:
        self.threads.append(threading.get_ident())
        self.setText(str(value))  # touches the widget: fatal if it were already deleted
        self.results.append(value)

    def on_error(self, error: BaseException) -> None:
        self.results.append(error)


def test_a_result_arrives_on_the_gui_thread(qtbot: QtBot) -> None:
    receiver = Receiver()
    qtbot.addWidget(receiver)
    run_in_pool(lambda: 42, receiver.on_result, receiver.on_error)
    qtbot.waitUntil(lambda: receiver.results == [42], timeout=5_000)
    assert receiver.threads == [threading.get_ident()]


def test_a_result_for_a_widget_deleted_meanwhile_is_dropped(qtbot: QtBot) -> None:
    receiver = Receiver()
    release = threading.Event()
    done = threading.Event()

    def slow() -> int:
        release.wait(5)
        done.set()
        return 7

    run_in_pool(slow, receiver.on_result, receiver.on_error)
    receiver.deleteLater()
    qtbot.wait(50)  # the widget is deleted by the event loop
    release.set()
    assert done.wait(5)
    time.sleep(0.05)
    qtbot.wait(100)  # an exception in a slot here would fail this test (pytest-qt reports it)


def test_widgets_deleted_while_their_jobs_finish_never_crash(qtbot: QtBot) -> None:
    """Deleting a widget on the GUI thread while a pool thread emits its result must not touch freed memory
    (a relay deleted with its widget, mid-emit, crashed the process)."""
    for _round in range(20):
        receivers = [Receiver() for _ in range(50)]
        for index, receiver in enumerate(receivers):
            run_in_pool(
                lambda index=index: time.sleep(index % 5 / 10_000), receiver.on_result, receiver.on_error
            )
        for receiver in receivers:
            shiboken6.delete(receiver)  # at once, as a parent's deletion does, while the jobs finish

    def all_relays_deleted() -> bool:
        # The application's main loop deletes them; a test's nested loop leaves deferred deletions to this call.
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        return not any(isinstance(kept, background._JobRelay) for kept in background._kept)

    qtbot.waitUntil(all_relays_deleted, timeout=5_000)  # each one, once its job has ended
    survivor = Receiver()
    qtbot.addWidget(survivor)
    run_in_pool(lambda: 2, survivor.on_result, survivor.on_error)
    qtbot.waitUntil(lambda: survivor.results == [2], timeout=5_000)


def test_a_result_for_a_deleted_owner_is_dropped_when_delivered_to_a_function(qtbot: QtBot) -> None:
    owner = Receiver()
    release = threading.Event()
    delivered: list[object] = []
    run_in_pool(lambda: release.wait(5), delivered.append, delivered.append, owner=owner)
    shiboken6.delete(owner)
    release.set()
    qtbot.wait(200)
    assert delivered == []
    kept = Receiver()
    qtbot.addWidget(kept)
    run_in_pool(lambda: 3, delivered.append, delivered.append, owner=kept)
    qtbot.waitUntil(lambda: delivered == [3], timeout=5_000)
