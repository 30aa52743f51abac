"""The window's client of the engine service: answers on the GUI thread, stale ones dropped."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine, ModelInfo, ReplyStats
from app.core.llm.load_options import LoadOptions
from app.core.modes import SamplingOptions
from app.ui.engine_bridge import EngineBridge

pytestmark = pytest.mark.gui

LONG = SamplingOptions(temperature=0.0, max_tokens=400)


@pytest.fixture
def bridge(qtbot: QtBot, model_path: Path) -> Iterator[EngineBridge]:
    loaded = EngineBridge()
    with qtbot.waitSignal(loaded.model_loaded, timeout=30_000):
        loaded.load(str(model_path), LoadOptions(context_size=1024))
    yield loaded
    loaded.shutdown()


def test_answers_arrive_on_the_gui_thread_typed(qtbot: QtBot, bridge: EngineBridge) -> None:
    threads: set[int] = set()
    bridge.token.connect(lambda _t: threads.add(threading.get_ident()))
    with qtbot.waitSignal(bridge.reply_finished, timeout=60_000) as finished:
        bridge.chat(
            [{"role": "user", "content": "What is the capital of France?"}], SamplingOptions(temperature=0)
        )
        assert bridge.is_generating and bridge.is_busy
    assert isinstance(finished.args[0], ReplyStats) and not bridge.is_generating
    assert threads == {threading.get_ident()}
    assert isinstance(bridge.model, ModelInfo)


def test_an_abandoned_reply_delivers_nothing_more(qtbot: QtBot, bridge: EngineBridge) -> None:
    pieces: list[str] = []
    ends: list[object] = []
    bridge.token.connect(pieces.append)
    bridge.reply_finished.connect(ends.append)
    bridge.chat([{"role": "user", "content": "Write a long story about a lighthouse."}], LONG)
    qtbot.waitUntil(lambda: len(pieces) >= 3, timeout=30_000)
    bridge.abandon_reply()
    seen = len(pieces)
    assert not bridge.is_generating
    # The next request runs once the abandoned one has stopped; nothing of the old one arrives meanwhile: what
    # arrives is the new reply alone, the same as when it is asked again.
    hi: list[ChatMessage] = [{"role": "user", "content": "Say hi."}]
    with qtbot.waitSignal(bridge.reply_finished, timeout=60_000):
        bridge.chat(hi, SamplingOptions(temperature=0, max_tokens=8))
    assert len(ends) == 1
    answered = len(pieces)
    with qtbot.waitSignal(bridge.reply_finished, timeout=60_000):
        bridge.chat(hi, SamplingOptions(temperature=0, max_tokens=8))
    assert answered > seen and "".join(pieces[seen:answered]) == "".join(pieces[answered:])


def test_a_job_runs_with_the_engine_and_stop_reaches_it(qtbot: QtBot, bridge: EngineBridge) -> None:
    results: list[object] = []
    failures: list[str] = []

    def count(engine: Engine, cancel: threading.Event) -> int:
        return engine.count_tokens("hello world")

    bridge.run_job(count, results.append, failures.append)
    assert bridge.is_busy
    qtbot.waitUntil(lambda: bool(results), timeout=10_000)
    assert isinstance(results[0], int) and results[0] > 0 and not bridge.is_busy

    started = threading.Event()

    def wait_for_stop(_engine: Engine, cancel: threading.Event) -> None:
        started.set()
        cancel.wait(10)
        from app.core.errors import Cancelled

        raise Cancelled()

    bridge.run_job(wait_for_stop, results.append, failures.append)
    assert started.wait(10)
    bridge.stop()
    qtbot.waitUntil(lambda: bool(failures), timeout=10_000)
    assert failures == [""]  # stopped: no sentence
