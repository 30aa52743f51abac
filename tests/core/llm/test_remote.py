"""The remote engine against real servers on 127.0.0.1: another LlamaDesk's ``serve`` and llama-cpp-python's
own server with the real model, and a small server of ours that misbehaves on purpose."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.errors import ContextOverflowError, UserError
from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine, ModelInfo
from app.core.llm.load_options import LoadOptions
from app.core.llm.protocol import local_engine
from app.core.llm.remote import RemoteEngine
from app.core.llm.remote_config import RemoteEngineError, RemoteServer
from app.core.llm.remote_info import RemoteModelInfo, RemoteReplyStats
from app.core.llm.remote_server import list_models
from app.core.llm.service import EngineClient, EngineService, JobCallbacks
from app.core.modes import SamplingOptions
from tests.fixtures.misbehaving_openai import MODEL, RunningServer, running_server
from tests.helpers.openai_servers import CONTEXT, llama_cpp_server, llamadesk_serve

# A question whose reply takes several tokens from any model, so a real server's reply arrives in pieces.
QUESTION: list[ChatMessage] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Name five fruits, one per line."},
]
GREEDY = SamplingOptions(temperature=0.0, max_tokens=12)


@pytest.fixture(scope="module")
def faulty() -> Iterator[RunningServer]:
    with running_server() as server:
        yield server


def connected(url: str, **options: object) -> RemoteEngine:
    engine = RemoteEngine(RemoteServer(url, **options))  # type: ignore[arg-type]
    engine.connect()
    return engine


def streamed(engine: RemoteEngine, messages: list[ChatMessage] = QUESTION) -> tuple[str, str | None]:
    """The text that arrived and the failure sentence, if any."""
    reply = engine.chat(messages, GREEDY)
    try:
        reply.collect()
    except RemoteEngineError as exc:
        return reply.text, str(exc)
    return reply.text, None


# -- faults ------------------------------------------------------------------------------------------------


def test_a_whole_reply_streams_and_names_engine_and_model(faulty: RunningServer) -> None:
    engine = connected(faulty.url("ok"), api_key="secret-1")
    reply = engine.chat(QUESTION, GREEDY)
    assert reply.collect() == "Hello world."
    stats = reply.stats
    assert isinstance(stats, RemoteReplyStats)
    assert (stats.engine, stats.model, stats.server) == ("server", MODEL, faulty.url("ok"))
    assert stats.finish_reason == "stop" and stats.generated_tokens == 3
    # The key went to this server, as a bearer token; the request carried the conversation and the budget.
    assert faulty.observed.authorizations[-1] == "Bearer secret-1"
    body = faulty.observed.chat_bodies[-1]
    assert body["model"] == MODEL and body["stream"] is True and body["temperature"] == 0.0
    assert body["messages"] == [{"role": m["role"], "content": m["content"]} for m in QUESTION]


def test_context_and_counts_come_from_the_server_where_it_says_them(faulty: RunningServer) -> None:
    engine = connected(faulty.url("ok"), context_size=1024)
    info = engine.model
    assert isinstance(info, RemoteModelInfo)
    assert info.context_size == 3000 and info.context_source == "server"  # llama-server's /props
    assert engine.counts_exactly and engine.count_tokens("one two three") == 3  # its /tokenize


def test_without_server_facts_the_setting_and_a_safe_estimate_stand_in(faulty: RunningServer) -> None:
    engine = connected(faulty.url("drop"), context_size=1024)
    info = engine.model
    assert info is not None and info.context_size == 1024 and info.native_context is None
    assert not engine.counts_exactly
    text = "Ünïcode wörds and plain ones"
    assert engine.count_tokens(text) == len(text.encode("utf-8"))  # no tokenizer makes more than a byte each
    # A message beyond the context is refused before anything is sent.
    with pytest.raises(ContextOverflowError):
        engine.chat([{"role": "user", "content": "x" * 2000}], GREEDY)


def test_old_turns_are_left_out_to_fit_the_servers_context(faulty: RunningServer) -> None:
    engine = connected(faulty.url("ok"), context_size=512)
    engine.count_tokens("")  # the /props context (3000 tokens) wins over the setting; words count as tokens
    history: list[ChatMessage] = [{"role": "system", "content": "Be brief."}]
    for turn in range(30):
        history += [
            {"role": "user", "content": f"question {turn} " + "word " * 60},
            {"role": "assistant", "content": "answer " * 30},
        ]
    history.append({"role": "user", "content": "And now?"})
    reply = engine.chat(history, SamplingOptions(temperature=0.0, max_tokens=100))
    reply.collect()
    sent = faulty.observed.chat_bodies[-1]["messages"]
    assert isinstance(sent, list)
    assert reply.stats.dropped_messages > 0
    assert sent[0]["content"] == "Be brief." and sent[-1]["content"] == "And now?"
    assert len(sent) == len(history) - reply.stats.dropped_messages


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("drop", "broke off"),
        ("truncated", "ended the reply midway"),
    ],
)
def test_a_stream_cut_midway_keeps_what_arrived(faulty: RunningServer, behaviour: str, expected: str) -> None:
    text, sentence = streamed(connected(faulty.url(behaviour)))
    print(behaviour, "->", sentence)
    assert text == "Hello wor"
    assert sentence is not None and expected in sentence and "kept" in sentence


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("error500", "failed while answering (500: CUDA error: out of memory)"),
        ("busy", "busy and refused the request (429"),
        ("missing", f"does not know the model '{MODEL}' (404"),
    ],
)
def test_http_errors_become_sentences(faulty: RunningServer, behaviour: str, expected: str) -> None:
    text, sentence = streamed(connected(faulty.url(behaviour)))
    print(behaviour, "->", sentence)
    assert text == "" and sentence is not None and expected in sentence


def test_a_wrong_key_is_a_sentence_about_the_key(faulty: RunningServer) -> None:
    with pytest.raises(RemoteEngineError, match=r"refused the API key given \(401\).*Settings → Engine"):
        connected(faulty.url("unauthorized"), api_key="wrong")


def test_slow_headers_end_the_reply_after_the_read_timeout(faulty: RunningServer) -> None:
    engine = connected(faulty.url("slow"), read_timeout=1.0)
    started = time.monotonic()
    text, sentence = streamed(engine)
    waited = time.monotonic() - started
    print(f"slow headers: ended after {waited:.2f} s: {sentence}")
    assert text == "" and sentence is not None and "sent nothing for 1 second," in sentence
    assert waited < 2.5


def test_a_server_that_is_down_is_a_sentence() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    with pytest.raises(RemoteEngineError, match=r"Cannot reach the server at .*running"):
        list_models(RemoteServer(f"http://127.0.0.1:{port}/v1"))
    assert time.monotonic() - started < 5


def test_a_wrong_address_is_a_sentence_about_the_url(faulty: RunningServer) -> None:
    with pytest.raises(RemoteEngineError, match=r"no OpenAI API at this address \(404\).*/v1"):
        list_models(RemoteServer(f"http://127.0.0.1:{faulty.port}/ok"))
    with pytest.raises(RemoteEngineError, match="not a server address"):
        RemoteEngine(RemoteServer("gpu-box:8000")).connect()


def test_stop_closes_the_stream(faulty: RunningServer) -> None:
    engine = connected(faulty.url("endless"))
    faulty.observed.disconnected.clear()
    cancel = threading.Event()
    reply = engine.chat(QUESTION, SamplingOptions(max_tokens=10_000), cancel=cancel)
    pieces = []
    for piece in reply:
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()  # as the engine service does for a ticket's cancel
    assert reply.stats.finish_reason == "cancelled" and len(pieces) == 3
    assert faulty.observed.disconnected.wait(5), "the server never saw the client hang up"


def test_stop_does_not_wait_for_a_server_that_has_not_answered_yet(faulty: RunningServer) -> None:
    engine = connected(faulty.url("slow"), read_timeout=30.0)  # its headers come after 3 s
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    reply = engine.chat(QUESTION, GREEDY, cancel=cancel)
    assert reply.collect() == ""
    waited = time.monotonic() - started
    print(f"stopped while the server had not answered: the reply ended after {waited:.2f} s")
    assert reply.stats.finish_reason == "cancelled" and waited < 1.0


def test_local_only_requests_answer_with_a_sentence(faulty: RunningServer, model_path: Path) -> None:
    engine = connected(faulty.url("ok"))
    with pytest.raises(UserError, match="This computer"):
        engine.load(model_path)
    with pytest.raises(UserError, match="This computer"):
        local_engine(engine)  # llama.cpp itself, saved states: what a benchmark needs
    assert not isinstance(engine, Engine)  # an engine of its own, not a local one with parts refused
    engine.unload()
    assert engine.model is None
    with pytest.raises(RemoteEngineError, match="Not connected"):
        engine.chat(QUESTION, GREEDY)


def test_the_key_never_shows_in_a_repr() -> None:
    assert "hunter2" not in repr(RemoteServer("http://127.0.0.1:1/v1", api_key="hunter2"))


# -- real servers with the real model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def llamadesk_url(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llamadesk_serve(model_path, tmp_path_factory.mktemp("serve-home")) as url:
        yield url


@pytest.fixture(scope="module")
def llama_cpp_url(model_path: Path) -> Iterator[str]:
    with llama_cpp_server(model_path) as url:
        yield url


def test_a_reply_streams_from_another_llamadesk(llamadesk_url: str) -> None:
    engine = connected(llamadesk_url)
    info = engine.model
    assert info is not None and info.context_size == CONTEXT  # its /v1/models says max_model_len
    pieces: list[str] = []
    reply = engine.chat(QUESTION, GREEDY)
    pieces.extend(reply)
    stats = reply.stats
    print(f"llamadesk serve: {''.join(pieces)!r} in {len(pieces)} pieces, {stats}")
    assert len(pieces) > 1 and all(pieces)  # streamed, not all at once
    assert (
        stats.finish_reason in ("stop", "length") and stats.prompt_tokens > 0 and stats.generated_tokens > 0
    )


def test_a_reply_streams_from_llama_cpp_pythons_server(llama_cpp_url: str) -> None:
    engine = connected(llama_cpp_url, context_size=CONTEXT)
    assert engine.counts_exactly  # its /extras/tokenize
    exact = engine.count_tokens("The capital of France is Paris.")
    assert 0 < exact < len("The capital of France is Paris.")
    reply = engine.chat(QUESTION, GREEDY)
    pieces = list(reply)
    print(f"llama_cpp.server: {''.join(pieces)!r} in {len(pieces)} pieces, {reply.stats}")
    assert len(pieces) > 1 and all(pieces)
    assert reply.stats.finish_reason in ("stop", "length") and reply.stats.generated_tokens > 0


def test_stop_ends_a_real_servers_reply_at_once(llama_cpp_url: str) -> None:
    engine = connected(llama_cpp_url, context_size=CONTEXT)
    cancel = threading.Event()
    story: list[ChatMessage] = [{"role": "user", "content": "Write a long story about a dragon."}]
    # Stopped at its third piece, or before its last when the model's greedy reply is shorter than that.
    opening = list(engine.chat(story, SamplingOptions(temperature=0.0, max_tokens=4)))
    stop_at = min(3, len(opening) - 1)
    assert stop_at >= 1, f"a reply too short to stop midway: {opening!r}"
    reply = engine.chat(story, SamplingOptions(temperature=0.0, max_tokens=400), cancel=cancel)
    count = 0
    for _piece in reply:
        count += 1
        if count == stop_at:
            cancel.set()
            stopped_at = time.monotonic()
    assert reply.stats.finish_reason == "cancelled" and count == stop_at
    assert time.monotonic() - stopped_at < 1.0
    # The server is free again: a new request is answered.
    assert engine.chat(QUESTION, GREEDY).collect()


# -- the engine service runs it, and swaps it for the local engine and back -----------------------------------


def switch(
    client: EngineClient, engine: Engine, remote: RemoteEngine | None = None
) -> ModelInfo | str | None:
    """Switch the service's engine; returns the new model, or the failure's sentence."""
    outcome: list[ModelInfo | str | None] = []
    prepare = (lambda _engine, _cancel: remote.connect()) if remote is not None else None
    ticket = client.switch_engine(engine, JobCallbacks(done=outcome.append, failed=outcome.append), prepare)
    assert ticket.wait(30)
    return outcome[0]


def test_the_service_swaps_between_this_computer_and_a_server(
    faulty: RunningServer, model_path: Path
) -> None:
    service = EngineService(Engine())
    try:
        client = service.client("test")
        local = client.load_and_wait(str(model_path), LoadOptions(context_size=512))

        # A server that refuses: the local model stays loaded and answering.
        refusing = RemoteEngine(RemoteServer(faulty.url("unauthorized")))
        sentence = switch(client, refusing, refusing)
        assert isinstance(sentence, str) and "401" in sentence
        assert service.model is local

        remote = RemoteEngine(RemoteServer(faulty.url("ok")))
        info = switch(client, remote, remote)
        assert isinstance(info, RemoteModelInfo) and service.model is info
        reply = client.stream_chat(QUESTION, GREEDY)
        assert "".join(reply) == "Hello world."

        # A failure mid-reply reaches the client as the sentence, after the pieces that arrived.
        broken = RemoteEngine(RemoteServer(faulty.url("drop")))
        switch(client, broken, broken)
        failing = client.stream_chat(QUESTION, GREEDY)
        with pytest.raises(UserError, match="broke off"):
            for _piece in failing:
                pass
        assert failing.text == "Hello wor"

        # Back to this computer: a fresh engine, then the model loads again.
        assert switch(client, Engine()) is None and service.model is None
        again = client.load_and_wait(str(model_path), LoadOptions(context_size=512))
        assert "".join(client.stream_chat(QUESTION, GREEDY)) and service.model is again
    finally:
        service.shutdown()


def test_a_model_on_another_machine_is_not_lent_to_local_apps(faulty: RunningServer) -> None:
    """The window's "let other apps use the loaded model" must not hand out the person's server and its key."""
    from starlette.testclient import TestClient

    from app.core.serve.app import create_app

    service = EngineService(connected(faulty.url("ok"), api_key="person-key"))
    asked_before = len(faulty.observed.chat_bodies)
    try:
        client = service.client("api")
        assert isinstance(client.model, RemoteModelInfo)
        with TestClient(create_app(client), base_url="http://127.0.0.1:8080") as api:
            for response in (
                api.get("/v1/models"),
                api.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]}),
            ):
                assert response.status_code == 503
                assert "another machine" in response.json()["error"]["message"]
            health = api.get("/health")  # tells the same truth: not "ok" while chat requests are refused
            assert health.status_code == 503 and "another machine" in health.json()["status"]
            assert len(faulty.observed.chat_bodies) == asked_before  # nothing reached the server
    finally:
        service.shutdown()
