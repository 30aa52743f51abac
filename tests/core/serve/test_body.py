"""A request body is read only when declared as JSON, only up to the size cap, and JSON that would make the parser
fail badly (deep nesting, a number too long to convert, NaN and the infinities) is a 400 sentence, never a 500
with a traceback in the log; over the real app and engine, and a real server on 127.0.0.1 where the wire matters.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from starlette.testclient import TestClient

from app.core.llm.engine import ModelInfo
from app.core.llm.service import EngineClient
from app.core.serve.app import ServeState, create_app
from app.core.serve.body import MAX_BODY_BYTES, MAX_NUMBER_DIGITS, parse_json_object
from app.core.serve.errors import ApiError
from app.core.serve.generation import Generation
from app.core.serve.history import ServedReply
from app.core.serve.requests import GenerationRequest
from app.core.serve.runner import ApiServer, listen
from tests.core.serve.test_app import CHAT, LOCAL, error_of

JSON = {"Content-Type": "application/json"}
MESSAGES = b'"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 2'


class WatchedState(ServeState):
    """The real server state, noting each reply it admits: a request refused before it is admitted never
    reached the model."""

    def __init__(self, client: EngineClient, on_served: Callable[[ServedReply], None] | None = None) -> None:
        super().__init__(client, on_served)
        self.admitted: list[Generation] = []

    def admit(self, request: GenerationRequest, model: ModelInfo) -> Generation:
        generation = super().admit(request, model)
        self.admitted.append(generation)
        return generation


@pytest.fixture
def state(loaded_client: EngineClient) -> WatchedState:
    return WatchedState(loaded_client)


@pytest.fixture
def api(loaded_client: EngineClient, state: WatchedState) -> Iterator[TestClient]:
    with TestClient(
        create_app(loaded_client, state=state), base_url=LOCAL, raise_server_exceptions=False
    ) as c:
        yield c


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert not errors, [record.getMessage() for record in errors]


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ],
)
def test_a_body_not_declared_as_json_is_refused_before_the_model_runs(
    api: TestClient, state: WatchedState, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.post(CHAT, content=b"{" + MESSAGES + b"}", headers=headers)
    error = error_of(response, 400)
    assert error["code"] == "invalid_content_type"
    assert str(content_type or "no content type") in str(error["message"])
    assert "application/json" in str(error["message"])
    error_of(api.post("/v1/completions", content=b'{"prompt": "Hi"}', headers=headers), 400)
    assert state.admitted == []


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"]
)
def test_json_content_types_are_served(api: TestClient, state: WatchedState, content_type: str) -> None:
    response = api.post(CHAT, content=b"{" + MESSAGES + b"}", headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["role"] == "assistant"
    assert len(state.admitted) == 1


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("nested arrays", b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ("nested objects", b'{"metadata": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}"),
        ("a 5,000-digit integer", b"{" + MESSAGES + b', "seed": ' + b"9" * 5000 + b"}"),
        ("a negative 5,000-digit integer", b"{" + MESSAGES + b', "seed": -' + b"9" * 5000 + b"}"),
        ("NaN", b"{" + MESSAGES + b', "temperature": NaN}'),
        ("Infinity", b"{" + MESSAGES + b', "top_p": Infinity}'),
        ("-Infinity", b"{" + MESSAGES + b', "temperature": -Infinity}'),
        ("a float that overflows", b"{" + MESSAGES + b', "temperature": 1e999}'),
        ("a negative float that overflows", b"{" + MESSAGES + b', "temperature": -2.5e400}'),
    ],
)
def test_json_the_parser_chokes_on_is_a_400_sentence_with_nothing_logged(
    api: TestClient, state: WatchedState, caplog: pytest.LogCaptureFixture, name: str, content: bytes
) -> None:
    for path in (CHAT, "/v1/completions"):
        error = error_of(api.post(path, content=content, headers=JSON), 400)
        assert error["code"] == "invalid_json", name
    assert state.admitted == []
    no_errors_logged(caplog)


def test_ordinary_numbers_still_parse() -> None:
    body = parse_json_object(b'{"a": 1.5e3, "b": -12, "c": 0.1, "d": ' + b"9" * MAX_NUMBER_DIGITS + b"}")
    assert body == {"a": 1500.0, "b": -12, "c": 0.1, "d": int("9" * MAX_NUMBER_DIGITS)}


@pytest.mark.parametrize("raw", [b"{bad", b"", b"\xff\xfe", b"[1, 2]", b'"text"', b"null"])
def test_a_body_that_is_not_a_json_object_is_refused(raw: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        parse_json_object(raw)
    print(caught.value.message)
    assert caught.value.status == 400 and caught.value.code == "invalid_json"
    assert caught.value.message.endswith(".")


def test_a_body_over_the_cap_is_413_declared_or_chunked(
    api: TestClient, state: WatchedState, caplog: pytest.LogCaptureFixture
) -> None:
    huge = b'{"messages": "' + b"x" * MAX_BODY_BYTES + b'"}'
    assert error_of(api.post(CHAT, content=huge, headers=JSON), 413)["code"] == "body_too_large"

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(huge), 64 * 1024):
            yield huge[start : start + 64 * 1024]

    assert error_of(api.post(CHAT, content=chunked(), headers=JSON), 413)["code"] == "body_too_large"
    assert state.admitted == []
    no_errors_logged(caplog)


@pytest.fixture
def server(loaded_client: EngineClient, state: WatchedState) -> Iterator[ApiServer]:
    running = ApiServer(loaded_client, listen("127.0.0.1", 0), state=state)
    running.start()
    yield running
    running.stop()


def answer_without_a_body(server: ApiServer, content_type: str, length: int) -> tuple[str, float]:
    """Headers announcing a body that is never sent, over a real socket: the server's answer (its status line
    and body) and how long it took. A server that waited for the body would answer only when the socket times out.
    """
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        started = time.perf_counter()
        connection.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n".encode()
        )
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        return received.decode("latin-1"), time.perf_counter() - started


def test_on_the_wire_the_type_and_the_declared_size_are_refused_before_the_body_is_read(
    server: ApiServer, state: WatchedState
) -> None:
    refused, took = answer_without_a_body(server, "text/plain", 1000)
    print(f"{took:.2f} s: {refused}")
    assert refused.startswith("HTTP/1.1 400") and "invalid_content_type" in refused and took < 10
    too_large, took = answer_without_a_body(server, "application/json", MAX_BODY_BYTES + 1)
    print(f"{took:.2f} s: {too_large}")
    assert too_large.startswith("HTTP/1.1 413") and "body_too_large" in too_large and took < 10
    assert state.admitted == []
