"""The server run on a thread of its own over a real engine client (as the window runs it): it answers, its
replies can be stopped, stopping it frees the port, and a taken port is a sentence."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx2
import openai
import pytest

from app.core.errors import UserError
from app.core.llm.service import EngineClient
from app.core.serve.runner import ApiServer, listen

STORY = [{"role": "user", "content": "Write a very long story about a dragon and a knight."}]


@pytest.fixture
def server(loaded_client: EngineClient) -> Iterator[ApiServer]:
    running = ApiServer(loaded_client, listen("127.0.0.1", 0))
    running.start()
    yield running
    running.stop()


def test_it_answers_and_stopping_frees_the_port(loaded_client: EngineClient) -> None:
    server = ApiServer(loaded_client, listen("127.0.0.1", 0))
    server.start()
    assert server.running and server.base_url == f"http://127.0.0.1:{server.port}/v1"
    reply = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0
    )
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    server.stop()
    assert not server.running
    listen("127.0.0.1", server.port).close()  # the port is free again at once


def test_a_taken_port_is_a_sentence_with_the_hint(server: ApiServer) -> None:
    with pytest.raises(UserError) as caught:
        listen("127.0.0.1", server.port, port_hint="choose another in Settings.")
    print(caught.value)
    assert str(caught.value).endswith("choose another in Settings.") and str(server.port) in str(caught.value)


def test_stop_replies_ends_a_running_stream_saying_why(server: ApiServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=60)
    stream = client.chat.completions.create(
        model="m",
        messages=STORY,  # type: ignore[arg-type]
        max_tokens=900,
        temperature=0,
        stream=True,
    )
    pieces = iter(stream)
    next(pieces)
    ended = threading.Event()
    rest: list[str] = []
    errors: list[Exception] = []

    def drain() -> None:
        try:
            for chunk in pieces:
                rest.append(str(chunk))
        except openai.APIError as exc:
            errors.append(exc)
        finally:
            ended.set()

    threading.Thread(target=drain, daemon=True).start()
    assert server.stop_replies("Switching models; ask again.") == 1
    assert ended.wait(10), "the stream did not end after its reply was stopped"
    print(f"{len(rest)} chunks after the stop; {errors}")
    assert len(rest) < 200
    assert errors and "Switching models; ask again." in str(errors[0])


def test_a_reply_the_server_stops_is_a_503_with_the_reason(server: ApiServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=60)
    outcome: list[Exception] = []

    def ask() -> None:
        try:
            client.chat.completions.create(
                model="m",
                messages=STORY,  # type: ignore[arg-type]
                max_tokens=900,
                temperature=0,
            )
        except openai.APIStatusError as exc:
            outcome.append(exc)

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    deadline = time.monotonic() + 30
    while server.stop_replies("Switching models; ask again.") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    asking.join(30)
    print(outcome)
    assert outcome and outcome[0].status_code == 503 and "Switching models" in outcome[0].message


def test_stop_with_a_client_mid_stream_returns_promptly(loaded_client: EngineClient) -> None:
    server = ApiServer(loaded_client, listen("127.0.0.1", 0))
    server.start()
    with (
        httpx2.Client(timeout=30) as http,
        http.stream(
            "POST",
            f"{server.base_url}/chat/completions",
            json={"messages": STORY, "max_tokens": 900, "stream": True},
        ) as response,
    ):
        next(response.iter_lines())
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        stopping.join(8)
        assert not stopping.is_alive()
    assert not server.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
