"""Served chat replies kept in the history only when asked: a conversation per request, titled from its first user
message and marked as served; over the real app, engine and SQLite."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from app.core.history.store import HistoryStore
from app.core.llm.service import EngineClient
from app.core.serve.app import ServeState, create_app
from app.core.serve.history import SERVED_MARK, ServedHistory

CHAT = "/v1/chat/completions"
ASK = {
    "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?"},
    ],
    "max_tokens": 4,
    "temperature": 0,
}


def served_app(client: EngineClient, history: ServedHistory | None) -> TestClient:
    state = ServeState(client, on_served=history.record if history else None)
    return TestClient(create_app(client, state=state), base_url="http://127.0.0.1:8080")


@pytest.mark.parametrize("stream", [False, True])
def test_each_chat_request_becomes_a_marked_conversation(loaded_client: EngineClient, stream: bool) -> None:
    saved: list[int] = []
    history = ServedHistory(saved=saved.append)
    with served_app(loaded_client, history) as api:
        response = api.post(CHAT, json=ASK | {"stream": stream})
        assert response.status_code == 200
        api.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 2})  # not a chat: not kept
    history.close()
    assert len(saved) == 1
    with HistoryStore() as store:
        conversation = store.get_conversation(saved[0])
        messages = store.messages(saved[0])
        assert store.count_conversations() == 1
    print(conversation.title, [(m.role, m.content, m.state) for m in messages])
    assert conversation.title == "Name a colour." and conversation.settings == SERVED_MARK
    assert [m.role for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[-1].content and messages[-1].state == "complete"
    assert messages[-1].generated_tokens is not None and messages[-1].generated_tokens > 0
    if not stream:
        assert messages[-1].content == response.json()["choices"][0]["message"]["content"]


def test_nothing_is_kept_unless_asked(loaded_client: EngineClient) -> None:
    with served_app(loaded_client, None) as api:
        assert api.post(CHAT, json=ASK).status_code == 200
    with HistoryStore() as store:
        assert store.count_conversations() == 0
