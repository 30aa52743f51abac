"""The switch the window turns the API server on and off with: real servers on 127.0.0.1, started and stopped
on the switch's own thread; asking returns at once, the newest wish wins, a failure is a sentence, closing
stops."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from app.core.llm.service import EngineService
from app.core.serve.runner import ApiServer, listen
from app.core.serve.switch import FAILED, NOT_STARTED, OFF, SERVING, ServerStatus, ServerSwitch


@pytest.fixture(scope="module")
def service() -> Iterator[EngineService]:
    running = EngineService()  # no model: the server still answers /health
    yield running
    running.shutdown()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def starter(service: EngineService) -> Callable[[int], ApiServer]:
    def start(port: int) -> ApiServer:
        server = ApiServer(service.client("api"), listen("127.0.0.1", port, port_hint="choose another."))
        server.start()
        return server

    return start


class Told:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: list[ServerStatus] = []
        self.threads: set[str] = set()

    def __call__(self, status: ServerStatus) -> None:
        with self.lock:
            self.statuses.append(status)
            self.threads.add(threading.current_thread().name)

    def states(self) -> list[str]:
        with self.lock:
            return [status.state for status in self.statuses]


def answers(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as reply:
        return bool(json.loads(reply.read())["status"])


def test_asking_returns_at_once_and_the_newest_wish_wins(service: EngineService) -> None:
    told = Told()
    switch: ServerSwitch[int] = ServerSwitch(starter(service), told)
    first, second = free_port(), free_port()
    asked = time.perf_counter()
    switch.want(first)
    switch.want(second)
    returned = time.perf_counter() - asked
    assert switch.wait(30)
    server = switch.server
    assert server is not None and server.port == second and answers(second)
    assert told.statuses[-1] == ServerStatus(SERVING, base_url=f"http://127.0.0.1:{second}/v1")
    listen("127.0.0.1", first).close()  # never served, or stopped on the way: free
    assert returned < 0.5 and threading.main_thread().name not in told.threads

    switch.want(second)  # what runs: nothing to do
    assert switch.wait(5) and switch.server is server
    switch.want(None)
    assert switch.wait(30)
    assert switch.server is None and told.states()[-2:] == ["stopping", OFF]
    listen("127.0.0.1", second).close()  # the port is free again


def test_a_start_that_fails_is_a_sentence_and_asking_again_tries_again(service: EngineService) -> None:
    told = Told()
    switch: ServerSwitch[int] = ServerSwitch(starter(service), told)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        switch.want(port)
        assert switch.wait(30)
        failed = told.statuses[-1]
        print(f"\n{failed.sentence}")
        assert failed.state == FAILED and str(port) in failed.sentence
        assert failed.sentence.endswith("another.")
        assert switch.server is None
    switch.want(port)
    assert switch.wait(30) and told.states()[-1] == SERVING and answers(port)

    switch.close()  # stops, and takes no more wishes
    switch.want(port)
    assert switch.wait(30)
    assert switch.server is None and told.states()[-1] == OFF
    listen("127.0.0.1", port).close()


def test_a_bug_while_starting_is_logged_and_told_as_a_sentence(caplog: pytest.LogCaptureFixture) -> None:
    def start(_port: int) -> ApiServer:
        raise RuntimeError("a bug")

    told = Told()
    switch: ServerSwitch[int] = ServerSwitch(start, told)
    switch.want(1)
    assert switch.wait(10)
    assert told.statuses[-1] == ServerStatus(FAILED, sentence=NOT_STARTED)
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None and "a bug" in str(record.exc_info[1])
