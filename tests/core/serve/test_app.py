"""The API's refusals, in process over the real engine service: each one OpenAI-shaped with its status code,
never a traceback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.core.llm.load_options import LoadOptions
from app.core.llm.service import EngineClient, EngineService, LoadCallbacks
from app.core.serve.app import MAX_WAITING, ServeState, create_app
from app.core.serve.body import MAX_BODY_BYTES
from app.core.serve.errors import ApiError
from app.core.serve.generation import Generation
from app.core.serve.guard import host_name
from app.core.serve.requests import MAX_MESSAGES, chat_request

KEY = "s3cret-key"
LOCAL = "http://127.0.0.1:8080"
CHAT = "/v1/chat/completions"
HELLO = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 2, "temperature": 0}
JSON = {"Content-Type": "application/json"}  # what `json=` sets; a raw `content=` body needs it said


@pytest.fixture(scope="module")
def api(loaded_client: EngineClient) -> Iterator[TestClient]:
    with TestClient(
        create_app(loaded_client, api_key=KEY), base_url=LOCAL, raise_server_exceptions=False
    ) as c:
        c.headers["Authorization"] = f"Bearer {KEY}"
        yield c


def error_of(response: object, status: int) -> dict[str, object]:
    assert getattr(response, "status_code", None) == status, getattr(response, "text", "")
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error["message"], str) and error["message"].endswith(".") and error["type"]
    assert "Traceback" not in error["message"]
    print(status, error["message"])
    return dict(error)


def test_a_small_reply_with_usage(api: TestClient) -> None:
    body = api.post(CHAT, json=HELLO | {"model": "whatever-name"}).json()
    assert body["object"] == "chat.completion"
    assert body["model"] != "whatever-name" and body["model"]
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    assert body["choices"][0]["finish_reason"] in {"stop", "length"}


@pytest.mark.parametrize(
    ("content", "status"),
    [(b"{bad", 400), (b"[]", 400), (b'{"messages": 3}', 400), (b'{"messages": [], "max_tokens": -1}', 400)],
)
def test_malformed_bodies_are_400(api: TestClient, content: bytes, status: int) -> None:
    error_of(api.post(CHAT, content=content, headers=JSON), status)


def test_a_body_over_the_limit_is_413_declared_or_not(api: TestClient) -> None:
    huge = b'{"messages": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}'
    error_of(api.post(CHAT, content=huge, headers=JSON), 413)

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield huge

    error_of(api.post(CHAT, content=chunked(), headers=JSON), 413)


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {KEY}", f"Bearer {KEY}x", "Bearer"])
def test_a_missing_or_wrong_key_is_401(api: TestClient, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with TestClient(api.app, base_url=LOCAL) as bare:
        response = bare.get("/v1/models", headers=headers)
    assert error_of(response, 401)["code"] == "invalid_api_key"
    assert KEY not in response.text


def test_health_needs_no_key(api: TestClient) -> None:
    with TestClient(api.app, base_url=LOCAL) as bare:
        assert bare.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost.evil", "", "[::2]:80"]
)
def test_a_foreign_host_is_403_even_with_the_key(api: TestClient, host: str) -> None:
    error_of(api.get("/v1/models", headers={"Host": host}), 403)
    error_of(api.get("/health", headers={"Host": host}), 403)


@pytest.mark.parametrize("host", ["localhost:8080", "127.0.0.1", "[::1]:8080", "LOCALHOST"])
def test_this_machine_s_names_are_served(api: TestClient, host: str) -> None:
    assert api.get("/v1/models", headers={"Host": host}).status_code == 200


def test_host_names_are_parsed_without_their_port() -> None:
    assert [host_name(h) for h in ("a.b:80", "[::1]:8080", "::1", "Localhost")] == [
        "a.b",
        "::1",
        "::1",
        "localhost",
    ]


def test_bound_beyond_loopback_the_bound_address_is_allowed(loaded_client: EngineClient) -> None:
    app = create_app(loaded_client, bound_host="192.168.1.20", api_key=KEY)
    with TestClient(
        app, base_url="http://192.168.1.20:8080", headers={"Authorization": f"Bearer {KEY}"}
    ) as c:
        assert c.get("/v1/models").status_code == 200
        error_of(c.get("/v1/models", headers={"Host": "rebound.example"}), 403)


def test_unknown_paths_and_methods_are_openai_shaped(api: TestClient) -> None:
    error_of(api.get("/v1/nothing"), 404)
    error_of(api.get(CHAT), 405)


def test_no_cors_headers(api: TestClient) -> None:
    response = api.options(
        CHAT, headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert not any(name.lower().startswith("access-control") for name in response.headers)


def test_no_model_loaded_is_503() -> None:
    service = EngineService()
    try:
        with TestClient(create_app(service.client("api")), base_url=LOCAL) as c:
            assert error_of(c.post(CHAT, json=HELLO), 503)["code"] == "model_not_loaded"
            error_of(c.get("/v1/models"), 503)
            assert c.get("/health").json()["status"] == "no model loaded"
    finally:
        service.shutdown()


def test_more_than_eight_waiting_is_429(loaded_client: EngineClient) -> None:
    """The engine is held by another client's job (as the window's reply would), so every request of ours
    waits: one more than MAX_WAITING + 1 is refused, and once they end, requests are admitted again."""
    state = ServeState(loaded_client)
    release = threading.Event()
    blocker = loaded_client.service.client("window", priority=True).start_job(
        lambda _engine, cancel: release.wait(30) or cancel.is_set()
    )
    model = loaded_client.model
    assert model is not None
    request = chat_request(HELLO, model)
    admitted = [state.admit(request, model) for _ in range(MAX_WAITING + 1)]
    with pytest.raises(ApiError) as caught:
        state.admit(request, model)
    assert caught.value.status == 429
    print(caught.value.message)
    for generation in admitted:
        generation.cancel()
    # Cancelled ones (their clients gone) stop counting at once, before the engine gets to drop them.
    extra = state.admit(request, model)
    extra.cancel()
    release.set()
    blocker.result()
    for generation in admitted:
        assert generation.collect() == ""  # stopped while it waited: nothing generated
    state.admit(request, model).collect()


def test_requests_arriving_together_from_many_threads_are_each_counted_once(
    loaded_client: EngineClient,
) -> None:
    """The event loop admits while worker threads, the window and the runner stop: the list of replies has one
    owner, so with the engine held, exactly MAX_WAITING + 1 of many simultaneous requests are admitted, every one
    of them is in the list, and stopping all reaches each."""
    state = ServeState(loaded_client)
    release = threading.Event()
    blocker = loaded_client.service.client("window", priority=True).start_job(
        lambda _engine, cancel: release.wait(30) or cancel.is_set()
    )
    model = loaded_client.model
    assert model is not None
    request = chat_request(HELLO, model)
    arriving = 3 * (MAX_WAITING + 1)
    together = threading.Barrier(arriving)
    outcomes: list[Generation | int] = []
    kept = threading.Lock()

    def arrive() -> None:
        together.wait()
        try:
            outcome: Generation | int = state.admit(request, model)
        except ApiError as exc:
            outcome = exc.status
        with kept:
            outcomes.append(outcome)

    threads = [threading.Thread(target=arrive) for _ in range(arriving)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    admitted = [o for o in outcomes if isinstance(o, Generation)]
    refused = [o for o in outcomes if not isinstance(o, Generation)]
    assert len(admitted) == MAX_WAITING + 1 and refused == [429] * (arriving - MAX_WAITING - 1)
    assert {id(g) for g in state.generations} == {id(g) for g in admitted}
    # The window and the runner may stop them at the same time.
    stoppers = [threading.Thread(target=state.stop_all) for _ in range(4)]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join(30)
    assert all(g.cancelled for g in admitted)
    assert state.stop_all() == 0  # each was stopped: none is live any more
    release.set()
    blocker.result()


def test_a_prompt_longer_than_the_context_is_400_context_length_exceeded_streamed_or_not(
    api: TestClient,
) -> None:
    """As OpenAI and llama.cpp's server answer: refused whole, naming the prompt's tokens and the limit, before
    any stream starts; never cut silently."""
    long = {"messages": [{"role": "user", "content": "word " * 3000}], "max_tokens": 10}
    for body in (long, long | {"stream": True}):
        error = error_of(api.post(CHAT, json=body), 400)
        assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
        assert "1,024" in str(error["message"])
    raw = {"prompt": "word " * 3000, "max_tokens": 10}
    assert error_of(api.post("/v1/completions", json=raw), 400)["code"] == "context_length_exceeded"


def test_a_max_tokens_the_prompt_leaves_no_room_for_is_400(api: TestClient) -> None:
    body = {"messages": [{"role": "user", "content": "word " * 600}], "max_tokens": 600}
    error = error_of(api.post(CHAT, json=body), 400)
    assert error["code"] == "context_length_exceeded" and "max_tokens" in str(error["message"])
    # Without a max_tokens of its own, the reply takes the room there is.
    assert api.post(CHAT, json=body | {"max_tokens": None}).status_code == 200


def test_a_loopback_address_other_than_127_0_0_1_serves_its_own_name() -> None:
    from app.core.serve.guard import Guard

    guard = Guard(create_app_placeholder, bound_host="127.0.0.2", api_key=None)
    assert guard.refusal({"host": "127.0.0.2:8080"}, "/v1/models") is None
    refused = guard.refusal({"host": "evil.example:8080"}, "/v1/models")
    assert refused is not None and refused.status == 403


def test_a_key_with_non_ascii_characters_matches_its_utf8_bytes() -> None:
    from app.core.serve.guard import Guard

    guard = Guard(create_app_placeholder, bound_host="127.0.0.1", api_key="clé")
    sent = "Bearer " + "clé".encode().decode(
        "latin-1"
    )  # the header's bytes, as the ASGI server hands them over
    assert guard.refusal({"host": "127.0.0.1", "authorization": sent}, "/v1/models") is None
    wrong = guard.refusal({"host": "127.0.0.1", "authorization": "Bearer cle"}, "/v1/models")
    assert wrong is not None and wrong.status == 401


async def create_app_placeholder(scope: object, receive: object, send: object) -> None:
    """An ASGI app that is never called: these tests ask the guard directly."""
    raise AssertionError("not reached")


def test_a_request_waiting_when_the_model_changes_is_refused_never_run_on_the_new_one(
    loaded_client: EngineClient, model_path: Path
) -> None:
    """Admitted for one model, a request whose turn comes after the window loaded another (or switched to a
    server) gets 503 model_changed: it never runs on an engine it was not meant for."""
    state = ServeState(loaded_client)
    release = threading.Event()
    window = loaded_client.service.client("window", priority=True)
    blocker = window.start_job(lambda _engine, cancel: release.wait(30) or cancel.is_set())
    answers: list[object] = []
    with TestClient(create_app(loaded_client, state=state), base_url=LOCAL) as api:
        asking = threading.Thread(target=lambda: answers.append(api.post(CHAT, json=HELLO)))
        asking.start()
        for _ in range(600):
            if state.generations:
                break
            threading.Event().wait(0.05)
        loaded: list[object] = []
        window.load(
            str(model_path),
            LoadOptions(context_size=1024),
            LoadCallbacks(loaded=loaded.append, failed=loaded.append),
        )
        release.set()
        blocker.result()
        asking.join(60)
    error = error_of(answers[0], 503)
    assert error["code"] == "model_changed"
    assert loaded and loaded_client.model is loaded[0]


def test_more_messages_than_a_request_may_hold_is_400(api: TestClient) -> None:
    many = [{"role": "user", "content": "hi"}] * (MAX_MESSAGES + 1)
    error = error_of(api.post(CHAT, json={"messages": many}), 400)
    assert error["param"] == "messages" and f"{MAX_MESSAGES:,}" in str(error["message"])


def test_two_thousand_short_messages_are_counted_at_once(api: TestClient) -> None:
    """Rendered and counted once, not once per possible cut: a refusal (they overflow the context) in seconds."""
    many = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(2000)]
    started = time.perf_counter()
    error = error_of(api.post(CHAT, json={"messages": many, "max_tokens": 4}), 400)
    assert error["code"] == "context_length_exceeded"
    assert time.perf_counter() - started < 30  # minutes before
