"""The engine service: one thread, requests in order, the window first, a cancel per request, answers per client."""

from __future__ import annotations

import os
import shutil
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.errors import UserError
from app.core.llm.engine import Engine, ModelInfo, ReplyStats
from app.core.llm.gguf_check import read_gguf
from app.core.llm.load_options import LoadOptions
from app.core.llm.service import EngineService, JobCallbacks, LoadCallbacks, ReplyCallbacks
from app.core.modes import SamplingOptions
from tests.helpers.engine_service import service_over

GREEDY = SamplingOptions(temperature=0.0, max_tokens=24, seed=1)


@pytest.fixture
def service(engine: Engine) -> Iterator[EngineService]:
    """A service over the shared, already loaded engine; its thread stops with the test, the engine stays
    loaded."""
    with service_over(engine) as lent:
        yield lent


def test_requests_run_in_order_and_the_window_goes_ahead_of_queued_api_requests(
    service: EngineService,
) -> None:
    window = service.client("window", priority=True)
    api = service.client("api")
    order: list[str] = []
    release = threading.Event()
    started = threading.Event()

    def job(name: str, block: bool = False):  # type: ignore[no-untyped-def]
        def run(_engine: Engine, _cancel: threading.Event) -> str:
            if block:
                started.set()
                release.wait(10)
            order.append(name)
            return name

        return run

    done: list[str] = []
    answer = JobCallbacks[str](done=done.append, failed=lambda m: done.append(f"failed {m}"))
    api.run_job(job("api-1", block=True), answer)
    assert started.wait(10)
    api.run_job(job("api-2"), answer)
    api.run_job(job("api-3"), answer)
    last = window.run_job(job("window"), answer)
    release.set()
    assert last.wait(10)
    deadline = time.monotonic() + 10
    while len(done) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    # The running request is never interrupted; the window's goes next, then the API's in their order.
    assert order == ["api-1", "window", "api-2", "api-3"]
    assert done == order


def test_a_request_stopped_while_queued_never_runs(service: EngineService) -> None:
    client = service.client("api")
    release = threading.Event()
    ran: list[str] = []
    failures: list[str] = []
    client.run_job(
        lambda _e, _c: release.wait(10), JobCallbacks(done=lambda _r: None, failed=failures.append)
    )
    queued = client.run_job(
        lambda _e, _c: ran.append("queued"), JobCallbacks(done=lambda _r: None, failed=failures.append)
    )
    queued.cancel()
    release.set()
    assert queued.wait(10)
    assert ran == [] and failures == [""]


def test_each_client_sees_only_its_own_reply(service: EngineService) -> None:
    answers: dict[str, list[str]] = {"window": [], "api": []}
    finished: dict[str, ReplyStats] = {}
    tickets = []
    for name, question in (("api", "What is the capital of France?"), ("window", "Say hello.")):
        client = service.client(name, priority=name == "window")
        callbacks = ReplyCallbacks(
            token=answers[name].append,
            finished=lambda stats, n=name: finished.__setitem__(n, stats),  # type: ignore[misc]
            failed=lambda message: pytest.fail(message),
        )
        tickets.append(client.chat([{"role": "user", "content": question}], GREEDY, callbacks))
    for ticket in tickets:
        assert ticket.wait(60)
    assert set(finished) == {"window", "api"}
    # Each client's pieces are its own reply's: no more than its own tokens (a piece per token, and a tail),
    # and the same text as the same question asked alone afterwards.
    for name, question in (("api", "What is the capital of France?"), ("window", "Say hello.")):
        assert answers[name] and len(answers[name]) <= finished[name].generated_tokens + 1
        alone = service.client("alone").stream_chat([{"role": "user", "content": question}], GREEDY)
        assert "".join(answers[name]) == "".join(alone), name


def test_stopping_a_running_reply_is_fast_and_the_next_one_runs(service: EngineService) -> None:
    client = service.client("cli")
    reply = client.stream_chat(
        [{"role": "user", "content": "Write a long story about a lighthouse."}],
        SamplingOptions(temperature=0.0, max_tokens=2000),
    )
    pieces = iter(reply)
    next(pieces)
    stopped_at = time.perf_counter()
    reply.cancel()
    rest = list(pieces)
    assert time.perf_counter() - stopped_at < 2.0
    assert reply.stats is not None and reply.stats.finish_reason == "cancelled"
    assert len(rest) < 200
    again = client.stream_chat([{"role": "user", "content": "What is the capital of France?"}], GREEDY)
    assert "".join(again) and again.stats is not None and again.stats.finish_reason in ("stop", "length")


def test_a_failed_reply_raises_its_sentence_on_the_callers_thread(service: EngineService) -> None:
    reply = service.client("cli").stream_chat([{"role": "user", "content": "word " * 50_000}], GREEDY)
    with pytest.raises(UserError, match="too long for the model's context"):
        list(reply)


def refused_by_llama_cpp(model_path: Path, folder: Path) -> Path:
    """A copy of the real model whose header passes every check but whose embedding length disagrees with its
    tensors: llama.cpp refuses it at load."""
    data = bytearray(model_path.read_bytes())
    key = f"{read_gguf(model_path).architecture}.embedding_length".encode()
    at = data.index(key) + len(key) + 4  # the key, then its value type (uint32)
    (width,) = struct.unpack_from("<I", data, at)
    struct.pack_into("<I", data, at, width * 2)
    path = folder / "wrong-shape.gguf"
    path.write_bytes(data)
    return path


def test_switching_models_unloads_first_and_a_failed_load_brings_the_previous_model_back(
    model_path: Path, tmp_path: Path
) -> None:
    service = EngineService(Engine())
    client = service.client("window", priority=True)
    try:
        first = client.load_and_wait(str(model_path), LoadOptions(context_size=512))
        broken = refused_by_llama_cpp(model_path, tmp_path)
        outcome: list[tuple[str, ModelInfo | None]] = []
        ticket = client.load(
            str(broken),
            LoadOptions(context_size=512),
            LoadCallbacks(
                loaded=lambda _i: None, failed=lambda f: outcome.append((f.message, f.still_loaded))
            ),
        )
        assert ticket.wait(60)
        message, still_loaded = outcome[0]
        assert "could not load wrong-shape.gguf" in message and "is loaded again" in message
        assert still_loaded is not None and still_loaded.path == first.path
        assert service.model is not None and service.model.path == first.path
        reply = client.stream_chat([{"role": "user", "content": "What is the capital of France?"}], GREEDY)
        assert "".join(reply) and reply.stats is not None and reply.stats.finish_reason in ("stop", "length")
    finally:
        service.shutdown()
    assert service.model is None  # shut down: the model is closed


def test_a_second_copy_of_a_model_loads_after_the_first_is_closed(model_path: Path, tmp_path: Path) -> None:
    """Switching between two files: the first model is closed before the second is built, and the memory
    check counts the first one's memory as free."""
    second = tmp_path / "copy.gguf"
    shutil.copyfile(model_path, second)
    engine = Engine()
    engine.load(model_path, LoadOptions(context_size=512))
    first_llama = engine.llama
    engine.load(second, LoadOptions(context_size=512))
    assert engine.model is not None and engine.model.path == second
    assert first_llama._model is None or getattr(first_llama._model, "model", None) is None  # closed
    engine.unload()


def test_a_load_stopped_while_queued_leaves_the_loaded_model_alone(model_path: Path, tmp_path: Path) -> None:
    service = EngineService(Engine())
    client = service.client("window", priority=True)
    try:
        first = client.load_and_wait(str(model_path), LoadOptions(context_size=512))
        release = threading.Event()
        client.run_job(
            lambda _e, _c: release.wait(10), JobCallbacks(done=lambda _r: None, failed=lambda _m: None)
        )
        outcome: list[tuple[str, ModelInfo | None]] = []
        second = tmp_path / "second.gguf"
        shutil.copyfile(model_path, second)
        ticket = client.load(
            str(second),
            LoadOptions(context_size=512),
            LoadCallbacks(
                loaded=lambda _i: None, failed=lambda f: outcome.append((f.message, f.still_loaded))
            ),
        )
        ticket.cancel()
        release.set()
        assert ticket.wait(30)
        # Stopped before it ran: no sentence, the same model, and it was never closed and loaded again.
        assert outcome == [("", first)]
        assert service.model is first
    finally:
        service.shutdown()


def test_a_reply_dropped_at_shutdown_ends_its_stream(model_path: Path) -> None:
    service = EngineService(Engine())
    client = service.client("cli")
    started = threading.Event()

    def busy(_engine: Engine, cancel: threading.Event) -> None:
        started.set()
        cancel.wait(10)

    client.run_job(busy, JobCallbacks(done=lambda _r: None, failed=lambda _m: None))
    assert started.wait(10)
    reply = client.stream_chat([{"role": "user", "content": "hi"}], GREEDY)
    service.shutdown()
    began = time.perf_counter()
    with pytest.raises(UserError, match="stopped"):
        list(reply)
    assert time.perf_counter() - began < 5


def test_the_engine_counts_as_busy_while_it_answers(service: EngineService) -> None:
    """What a library being indexed waits on: busy from a reply's start to its end, idle once it is done."""
    busy_during: list[bool] = []
    callbacks = ReplyCallbacks(
        token=lambda _piece: busy_during.append(service.activity.busy),
        finished=lambda _stats: None,
        failed=lambda message: pytest.fail(message),
    )
    ticket = service.client("window", priority=True).chat(
        [{"role": "user", "content": "Count from one to twenty."}], GREEDY, callbacks
    )
    assert ticket.wait(60)
    assert busy_during and all(busy_during)  # called on the engine thread, inside the request
    assert not service.activity.busy


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="only Linux gives a thread its own priority")
def test_a_service_asked_for_it_runs_its_engine_below_the_gui_thread_s_priority() -> None:
    """The window's engine: its thread (and so llama.cpp's threads, which inherit it) yields a core to the GUI."""
    from app.ui.engine_bridge import ENGINE_NICENESS_IN_WINDOW

    def engine_thread_niceness(_engine: object, _cancel: threading.Event) -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    window = EngineService(niceness=ENGINE_NICENESS_IN_WINDOW)
    plain = EngineService()
    try:
        assert window.client("test").start_job(engine_thread_niceness).result() == max(
            ours, ENGINE_NICENESS_IN_WINDOW
        )
        assert plain.client("test").start_job(engine_thread_niceness).result() == ours
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == ours  # the caller's is untouched
    finally:
        window.shutdown()
        plain.shutdown()
