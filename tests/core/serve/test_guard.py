"""Web pages and the server: a browser sends any page's "simple" request (a POST as text/plain) without asking the
server first, so a request with an Origin is refused unless it comes from the server's own origin or from a web
app the person allowed; those get CORS answers (preflight, and the origin on every response, streamed too).
Over the real app and engine, and a real server on 127.0.0.1 with the history kept, as the window runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from starlette.testclient import TestClient

from app.core.history.store import HistoryStore
from app.core.limits import OutOfRange
from app.core.llm.service import EngineClient
from app.core.serve.app import create_app
from app.core.serve.history import ServedHistory
from app.core.serve.runner import ApiServer, listen
from tests.core.serve.test_app import CHAT, HELLO, KEY, LOCAL, error_of
from tests.core.serve.test_body import WatchedState

WEB_APP = "https://chat.example.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def cors_headers(response: httpx2.Response) -> dict[str, str]:
    return {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control")
    }


@pytest.fixture
def state(loaded_client: EngineClient) -> WatchedState:
    return WatchedState(loaded_client)


@pytest.fixture
def api(loaded_client: EngineClient, state: WatchedState) -> Iterator[TestClient]:
    app = create_app(loaded_client, api_key=KEY, allowed_origins=[WEB_APP], state=state)
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {KEY}"
        yield client


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "null",
        "http://chat.example.com",  # the allowed app's host, another scheme
        "https://chat.example.com:8443",  # another port
        "https://chat.example.com.evil.example",
        "http://127.0.0.1:9999",  # this machine, another port: another program's page
        "https://127.0.0.1:8080",
        "http://127.0.0.1",
        "http://evil.example:8080",
        "not an origin",
    ],
)
def test_a_foreign_origin_is_refused_on_every_route_before_anything_runs(
    api: TestClient, state: WatchedState, origin: str
) -> None:
    # The simple request a page sends without a preflight: text/plain, no key needed to get this far.
    simple = api.post(
        CHAT, content=str(HELLO).encode(), headers={"Origin": origin, "Content-Type": "text/plain"}
    )
    error = error_of(simple, 403)
    assert error["code"] == "origin_not_allowed" and origin in str(error["message"])
    assert cors_headers(simple) == {}
    # With the key and a JSON body too (a page given the key), and on each route.
    assert (
        error_of(api.post(CHAT, json=HELLO, headers={"Origin": origin}), 403)["code"] == "origin_not_allowed"
    )
    for path in ("/v1/models", "/health", "/v1/nothing"):
        error_of(api.get(path, headers={"Origin": origin}), 403)
    assert state.admitted == []


def test_the_refusal_says_how_to_allow_a_web_app(api: TestClient) -> None:
    message = str(
        error_of(api.get("/v1/models", headers={"Origin": "https://notes.example"}), 403)["message"]
    )
    assert "--allow-origin https://notes.example" in message and "Settings" in message


def test_a_foreign_preflight_is_403_without_cors_headers(api: TestClient) -> None:
    response = api.options(CHAT, headers={"Origin": "https://evil.example"} | PREFLIGHT)
    error_of(response, 403)
    assert cors_headers(response) == {}


def test_an_allowed_web_app_gets_its_preflight_answered_without_the_key(api: TestClient) -> None:
    with TestClient(api.app, base_url=LOCAL) as bare:  # a browser sends no key with a preflight
        response = bare.options(CHAT, headers={"Origin": WEB_APP} | PREFLIGHT)
    assert response.status_code == 204 and not response.content
    headers = cors_headers(response)
    assert headers["access-control-allow-origin"] == WEB_APP
    assert {"POST", "GET"} <= {m.strip() for m in headers["access-control-allow-methods"].split(",")}
    assert {"authorization", "content-type"} <= {
        h.strip().lower() for h in headers["access-control-allow-headers"].split(",")
    }
    assert "Origin" in response.headers["vary"]


def test_an_allowed_web_app_may_send_the_headers_its_client_adds(api: TestClient) -> None:
    """openai-node adds x-stainless-* headers: the preflight allows what the trusted app's client asks for."""
    asked = "authorization, content-type, x-stainless-os, x-stainless-lang, openai-project"
    with TestClient(api.app, base_url=LOCAL) as bare:
        response = bare.options(
            CHAT, headers={"Origin": WEB_APP} | PREFLIGHT | {"Access-Control-Request-Headers": asked}
        )
    assert response.status_code == 204
    allowed = {h.strip() for h in cors_headers(response)["access-control-allow-headers"].split(",")}
    assert {"x-stainless-os", "openai-project", "authorization"} <= allowed


def test_an_allowed_web_app_reads_replies_and_refusals(api: TestClient, state: WatchedState) -> None:
    reply = api.post(CHAT, json=HELLO, headers={"Origin": WEB_APP})
    assert reply.status_code == 200 and reply.json()["object"] == "chat.completion"
    assert reply.headers["access-control-allow-origin"] == WEB_APP and "Origin" in reply.headers["vary"]
    models = api.get("/v1/models", headers={"Origin": WEB_APP})
    assert models.status_code == 200 and models.headers["access-control-allow-origin"] == WEB_APP
    with TestClient(api.app, base_url=LOCAL) as bare:  # no key: the page can read why
        refused = bare.get("/v1/models", headers={"Origin": WEB_APP})
    assert error_of(refused, 401)["code"] == "invalid_api_key"
    assert refused.headers["access-control-allow-origin"] == WEB_APP
    # Its simple request is still refused: the body must be declared as JSON.
    plain = api.post(CHAT, content=b"{}", headers={"Origin": WEB_APP, "Content-Type": "text/plain"})
    assert error_of(plain, 400)["code"] == "invalid_content_type"
    assert plain.headers["access-control-allow-origin"] == WEB_APP
    assert len(state.admitted) == 1


def test_a_streamed_reply_to_an_allowed_web_app_carries_its_origin(api: TestClient) -> None:
    with api.stream("POST", CHAT, json=HELLO | {"stream": True}, headers={"Origin": WEB_APP}) as response:
        assert response.status_code == 200
        assert (
            response.headers["access-control-allow-origin"] == WEB_APP
            and "Origin" in response.headers["vary"]
        )
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"])
def test_the_server_s_own_origin_is_served(api: TestClient, origin: str) -> None:
    response = api.get("/v1/models", headers={"Origin": origin})
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == origin


def test_without_an_origin_nothing_changes(api: TestClient) -> None:
    response = api.post(CHAT, json=HELLO)
    assert response.status_code == 200 and cors_headers(response) == {}
    assert "vary" not in response.headers


def test_an_allow_list_entry_that_is_not_an_origin_is_refused(loaded_client: EngineClient) -> None:
    with pytest.raises(OutOfRange) as caught:
        create_app(loaded_client, allowed_origins=["https://chat.example.com/app"])
    print(caught.value)
    assert "https://chat.example.com/app" in str(caught.value)


def test_a_hostile_page_s_simple_request_leaves_no_trace_in_the_history(
    loaded_client: EngineClient, llamadesk_home: Path
) -> None:
    """A real server on 127.0.0.1 keeping other apps' conversations, as the window runs it: a page's text/plain
    POST from a foreign origin (no preflight) is refused; the model never runs and the history stays empty,
    while the same request from a program is kept."""
    saved: list[int] = []
    history = ServedHistory(saved=saved.append)
    state = WatchedState(loaded_client, on_served=history.record)
    server = ApiServer(loaded_client, listen("127.0.0.1", 0), state=state, on_stopped=history.close)
    server.start()
    try:
        url = f"{server.base_url}/chat/completions"
        own = f"http://127.0.0.1:{server.port}"
        body = json.dumps(HELLO).encode()  # the JSON a page would send as text
        for origin in ("https://evil.example", "null", f"http://127.0.0.1:{server.port + 1}"):
            hostile = httpx2.post(url, content=body, headers={"Origin": origin, "Content-Type": "text/plain"})
            print(hostile.status_code, hostile.text)
            assert hostile.status_code == 403 and hostile.json()["error"]["code"] == "origin_not_allowed"
        # The server's own origin passes the origin check, but a simple request still declares no JSON.
        plain = httpx2.post(url, content=body, headers={"Origin": own, "Content-Type": "text/plain"})
        assert plain.status_code == 400 and plain.headers["access-control-allow-origin"] == own
        assert state.admitted == []
        kept = httpx2.post(url, json=HELLO, timeout=120)
        assert kept.status_code == 200 and len(state.admitted) == 1
    finally:
        server.stop()
    assert len(saved) == 1
    with HistoryStore() as store:
        assert store.count_conversations() == 1  # the program's request only
