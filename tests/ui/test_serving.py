"""The window's switch "Let other apps on this computer use the loaded model": a real window serves its own engine
on 127.0.0.1 to the real ``openai`` client; the window's requests go ahead of other apps' queued ones and the
window stays responsive; a model switch stops other apps' replies, saying so; turning it off frees the port;
the server starts and stops off the GUI thread, saying so meanwhile."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.core.serve.history import SERVED_MARK
from app.core.serve.runner import listen
from app.core.settings import Settings
from app.ui.serving import STARTING_TEXT, STOPPING_TEXT
from app.ui.settings_dialog import SettingsDialog
from app.ui.settings_serve import SWITCH_LABEL
from tests.helpers.window import open_window

pytestmark = pytest.mark.gui

STORY = "Write a very long story about a dragon and a knight."
WEB_APP = "https://chat.example.com"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Stream(threading.Thread):
    """One streamed request from another app, on its own thread: when its first and last text came."""

    def __init__(self, base_url: str, content: str, max_tokens: int) -> None:
        super().__init__(daemon=True)
        self.client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=120)
        self.content, self.max_tokens = content, max_tokens
        self.first: float | None = None
        self.last: float | None = None
        self.text = ""
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            stream = self.client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": self.content}],
                max_tokens=self.max_tokens,
                temperature=0,
                stream=True,
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    self.first = self.first or time.perf_counter()
                    self.text += chunk.choices[0].delta.content
            self.last = time.perf_counter()
        except Exception as exc:  # the test reads it
            self.error = exc


def test_the_window_serves_its_model_to_other_apps(qtbot: QtBot, model_path: Path) -> None:
    port = free_port()
    window = open_window(
        qtbot,
        model_path,
        sampling={"max_tokens": 12},
        serve_enabled=True,
        serve_port=port,
        serve_save_history=True,
        serve_allowed_origins=[WEB_APP],
    )
    url = f"http://127.0.0.1:{port}/v1"
    qtbot.waitUntil(lambda: window.serving.base_url == url, timeout=30_000)  # it starts off the GUI thread
    assert window.serving.indicator.isVisible() and url in window.serving.address.text()

    # Web pages: the one allowed in Settings may read the answers; another page's simple request (text/plain,
    # sent by a browser without asking first) is refused, so nothing of it reaches the history counted below.
    allowed = urllib.request.Request(f"{url}/models", headers={"Origin": WEB_APP})
    with urllib.request.urlopen(allowed, timeout=10) as answer:
        assert answer.headers["Access-Control-Allow-Origin"] == WEB_APP
    hostile = urllib.request.Request(
        f"{url}/chat/completions",
        data=json.dumps({"messages": [{"role": "user", "content": "Leaked?"}]}).encode(),
        headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(hostile, timeout=10)
    assert refused.value.code == 403

    # Another app's long reply runs; a second one queues; then the person sends: theirs goes first.
    running = Stream(url, STORY, 20)
    running.start()
    qtbot.waitUntil(lambda: running.first is not None, timeout=60_000)
    # A job behind it holds the engine until the person has sent, however soon the running reply ends, so the
    # order below does not depend on the machine's speed.
    gate = threading.Event()
    holding = window.bridge.service.client("test gate").start_job(lambda _engine, _cancel: gate.wait(60))
    queued = Stream(url, "Name a colour.", 8)
    queued.start()
    server = window.serving.server
    assert server is not None
    qtbot.waitUntil(
        lambda: any(g.request.messages[-1]["content"] == "Name a colour." for g in server.state.generations),
        timeout=10_000,
    )
    gaps: list[float] = []
    last_tick = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last_tick[0])
        last_tick[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    window_first: list[float] = []
    window.bridge.token.connect(lambda _text: window_first.append(time.perf_counter()))
    window.input.setPlainText("What is the capital of France?")
    window.send()
    gate.set()
    with qtbot.waitSignal(window.bridge.reply_finished, timeout=120_000):
        pass
    assert holding.result() is True
    window_done = time.perf_counter()
    running.join(120)
    queued.join(120)
    timer.stop()
    assert running.error is None and queued.error is None and running.text and queued.text
    assert running.first is not None and queued.first is not None and window_first
    print(
        f"window's first token {window_first[0] - running.first:.2f} s after the running API reply's, "
        f"the queued API reply's {queued.first - window_first[0]:.2f} s after the window's; window reply done "
        f"{window_done - window_first[0]:.2f} s after its first token; longest GUI-thread gap "
        f"{max(gaps) * 1000:.0f} ms over {len(gaps)} ticks"
    )
    # In order: the running API reply, then the person's, then the API reply queued before the person sent.
    assert running.first < window_first[0] < queued.first
    assert max(gaps) < 1.0  # generous: the 2-core test machine is shared with other work

    # Asked to, each served chat request is kept as a conversation marked as served.
    qtbot.waitUntil(lambda: window.store.count_conversations() == 3, timeout=10_000)
    served = [window.store.get_conversation(c.id) for c in window.store.list_conversations()]
    assert sorted(c.title for c in served if c.settings == SERVED_MARK) == ["Name a colour.", STORY]

    # A model switch stops the reply another app waits for, and says so.
    switched = Stream(url, STORY, 900)
    switched.start()
    qtbot.waitUntil(lambda: switched.first is not None, timeout=60_000)
    window.load_model(str(model_path))
    message = window.statusBar().currentMessage()
    print(message)
    assert "Stopped 1 reply to other apps" in message
    switched.join(30)
    assert not switched.is_alive()
    qtbot.waitUntil(lambda: not window.bridge.is_loading, timeout=60_000)

    # Off: the port is free again; on with the port taken: a sentence, no server.
    window.settings.serve_enabled = False
    window.serving.apply(window.settings)
    qtbot.waitUntil(lambda: not window.serving.indicator.isVisible(), timeout=30_000)
    assert window.serving.server is None and window.serving.base_url is None
    with socket.create_server(("127.0.0.1", port)):
        window.settings.serve_enabled = True
        window.serving.apply(window.settings)
        qtbot.waitUntil(lambda: str(port) in window.banner.label.text(), timeout=30_000)
        print(window.banner.label.text())
        assert window.serving.server is None and not window.serving.indicator.isVisible()
        assert "Settings" in window.banner.label.text()
    window.settings.serve_enabled = False
    window.serving.apply(window.settings)
    assert window.serving.wait(30)


class Ticks:
    """A QTimer ticking every 10 ms on the GUI thread: the longest gap between two ticks is the longest time
    the GUI thread was kept from its events."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self._last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self._last)
        self._last = now

    def longest(self) -> float:
        self.timer.stop()
        return max(self.gaps)


def test_the_server_starts_and_stops_off_the_gui_thread(qtbot: QtBot, model_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    window = open_window(qtbot, model_path)
    serving = window.serving
    said: list[str] = []
    serving.busy_changed.connect(said.append)
    ticks = Ticks()

    window.settings.serve_enabled, window.settings.serve_port = True, port
    asked = time.perf_counter()
    serving.apply(window.settings)
    returned = time.perf_counter() - asked
    qtbot.waitUntil(lambda: serving.indicator.isVisible(), timeout=10_000)
    shown_while_starting = serving.address.text()
    qtbot.waitUntil(lambda: serving.base_url == url, timeout=30_000)
    started = time.perf_counter() - asked
    assert said == [STARTING_TEXT, ""] and shown_while_starting in (STARTING_TEXT, f"Other apps: {url}")
    assert serving.copy.isVisible() and url in serving.address.text()
    serving.copy.click()
    assert QApplication.clipboard().text() == url and window.statusBar().currentMessage() == f"Copied {url}"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
        assert json.loads(answer.read())["status"] == "ok"  # it really answers, with the window's model

    # A request still sending its body when the server stops: uvicorn gives it its graceful 2 s.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        qtbot.wait(300)
        window.settings.serve_enabled = False
        asked = time.perf_counter()
        serving.apply(window.settings)
        qtbot.waitUntil(lambda: serving.busy == STOPPING_TEXT, timeout=10_000)
        assert serving.indicator.isVisible() and serving.address.text() == STOPPING_TEXT
        assert not serving.copy.isVisible()

        # Settings opened meanwhile: the switch waits until the server is off, then can be turned on again.
        seen: list[tuple[bool, str]] = []

        def look_at_the_switch() -> None:
            (dialog,) = [d for d in window.findChildren(SettingsDialog) if d.isVisible()]
            section = dialog.serve_section
            seen.append((section.enabled.isEnabled(), section.busy.text()))

            def settled(text: str) -> None:
                if not text:
                    serving.busy_changed.disconnect(settled)
                    seen.append((section.enabled.isEnabled(), section.busy.text()))
                    dialog.reject()

            if serving.busy:
                serving.busy_changed.connect(settled)
            else:
                dialog.reject()

        QTimer.singleShot(0, look_at_the_switch)
        window.open_settings()
        stopped = time.perf_counter() - asked
    longest = ticks.longest()
    print(
        f"\napply() returned in {returned * 1000:.1f} ms; serving after {started:.2f} s, stopped after "
        f"{stopped:.2f} s; longest GUI-thread gap {longest * 1000:.0f} ms over {len(ticks.gaps)} ticks"
    )
    assert seen == [(False, STOPPING_TEXT), (True, "")]
    assert not serving.indicator.isVisible() and serving.server is None and serving.base_url is None
    assert said == [STARTING_TEXT, "", STOPPING_TEXT, ""]
    listen("127.0.0.1", port).close()  # the port is free again
    assert stopped > 1.0  # the stop took its time, on the switch's thread ...
    assert returned < 0.5 and longest < 1.0  # ... while the GUI thread went on (generous: a shared machine)


def test_the_settings_dialog_section(qtbot: QtBot) -> None:
    dialog = SettingsDialog(Settings(serve_port=8123))
    qtbot.addWidget(dialog)
    dialog.show_page("Other apps")
    section = dialog.serve_section
    assert section.enabled.text() == SWITCH_LABEL and not section.enabled.isChecked()
    assert section.url.text() == "http://127.0.0.1:8123/v1"
    section.enabled.setChecked(True)
    section.port.setValue(9001)
    section.save_history.setChecked(True)
    section.origins.setPlainText(f"{WEB_APP}/, http://localhost:3000\nnot-an-origin")
    assert section.origins_problem.isVisibleTo(dialog) and "'not-an-origin'" in section.origins_problem.text()
    assert section.url.text() == "http://127.0.0.1:9001/v1"
    section.copy.click()
    assert QApplication.clipboard().text() == "http://127.0.0.1:9001/v1"
    assert section.copy.text() == "Copied"  # the dialog has no status bar: the button confirms, briefly
    qtbot.waitUntil(lambda: section.copy.text() == "Copy", timeout=5000)
    updated = dialog.result_settings()
    assert (updated.serve_enabled, updated.serve_port, updated.serve_save_history) == (True, 9001, True)
    assert updated.serve_allowed_origins == [WEB_APP, "http://localhost:3000"]  # the mistake left out
    section.restore_defaults()
    assert dialog.result_settings().serve_port == 8080 and not dialog.result_settings().serve_enabled
    assert dialog.result_settings().serve_allowed_origins == [] and not section.origins_problem.isVisibleTo(
        dialog
    )
