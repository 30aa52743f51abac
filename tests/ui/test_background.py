"""Short jobs on Qt's pool: results come back on the GUI thread, and never to a widget that is gone."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

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
