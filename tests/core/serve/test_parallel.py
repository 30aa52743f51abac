"""The API over a model loaded with ``parallel=4`` (``llamadesk serve --parallel 4``): concurrent requests are
answered together by the batched loop, through a real HTTP server on 127.0.0.1 and the real ``openai`` client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from app.core.llm.load_options import LoadOptions
from app.core.llm.service import EngineClient, EngineService
from app.core.serve.runner import ApiServer, listen

CONTEXT = 2048
PARALLEL = 4
STORY: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Write a very long story about a dragon and a knight."}
]


@pytest.fixture(scope="module")
def parallel_client(model_path: Path) -> Iterator[EngineClient]:
    service = EngineService()
    client = service.client("api")
    client.load_and_wait(str(model_path), LoadOptions(context_size=CONTEXT, parallel=PARALLEL))
    yield client
    service.shutdown()


@pytest.fixture(scope="module")
def api(parallel_client: EngineClient) -> Iterator[openai.OpenAI]:
    server = ApiServer(parallel_client, listen("127.0.0.1", 0))
    server.start()
    yield openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=300)
    server.stop()


def _stream(
    api: openai.OpenAI, max_tokens: int, stop: list[str] | None = None
) -> tuple[str, str | None, int, float, float]:
    """One streamed chat: its text, finish reason, completion tokens, and when its first and last text came."""
    stream = api.chat.completions.create(
        model="m",
        messages=STORY,
        max_tokens=max_tokens,
        temperature=0,
        stop=stop,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, tokens, first, last = "", None, 0, 0.0, 0.0
    for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        for choice in chunk.choices:
            if choice.delta.content:
                last = time.monotonic()
                first = first or last
                text += choice.delta.content
            finish = choice.finish_reason or finish
    return text, finish, tokens, first, last


def test_four_concurrent_streams_each_get_their_own_length(api: openai.OpenAI) -> None:
    budgets = [40, 60, 80, 100]
    with ThreadPoolExecutor(len(budgets)) as pool:
        results = list(pool.map(lambda n: _stream(api, n), budgets))
    for budget, (text, finish, tokens, _first, _last) in zip(budgets, results, strict=True):
        assert text
        assert finish in ("length", "stop")
        assert 0 < tokens <= budget
        if finish == "length":
            assert tokens == budget
    # Answered together, not one after another: every stream began before any other had ended.
    assert max(first for *_rest, first, _last in results) < min(last for *_rest, last in results)


def test_a_request_joins_a_batch_under_way(api: openai.OpenAI) -> None:
    with ThreadPoolExecutor(2) as pool:
        long = pool.submit(_stream, api, 300, stop=["\u0000never"])
        time.sleep(1.0)
        joined = pool.submit(_stream, api, 20)
        joined_text, joined_finish, joined_tokens, joined_first, joined_last = joined.result()
        text, finish, tokens, first, last = long.result()
    assert joined_text and 0 < joined_tokens <= 20 and joined_finish in ("length", "stop")
    assert text and 0 < tokens <= 300
    if finish == "length":
        # The long one was still writing when the short one joined, and after it ended.
        assert first < joined_first and joined_last < last


def test_closing_one_stream_leaves_the_others_going(api: openai.OpenAI) -> None:
    closed = threading.Event()

    def close_early() -> int:
        stream = api.chat.completions.create(
            model="m",
            messages=STORY,
            max_tokens=400,
            temperature=0,
            stream=True,
        )
        pieces = 0
        for _chunk in stream:
            pieces += 1
            if pieces == 5:
                break
        stream.close()
        closed.set()
        return pieces

    with ThreadPoolExecutor(3) as pool:
        others = [pool.submit(_stream, api, 120) for _ in range(2)]
        early = pool.submit(close_early)
        assert early.result() == 5
        for other in others:
            text, finish, tokens, _first, _last = other.result()
            assert text and finish in ("length", "stop") and 0 < tokens <= 120
    assert closed.is_set()


def test_logprobs_and_stops_in_a_batch(api: openai.OpenAI) -> None:
    def ask(stop: list[str] | None) -> openai.types.chat.ChatCompletion:
        return api.chat.completions.create(
            model="m",
            messages=STORY,
            max_tokens=60,
            temperature=0.8,
            seed=7,
            logprobs=True,
            top_logprobs=2,
            stop=stop,
        )

    with ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(ask, [None, [" the"], ["."]]))
    for reply, stop in zip(replies, [None, " the", "."], strict=True):
        choice = reply.choices[0]
        assert reply.usage is not None
        assert choice.logprobs is not None and choice.logprobs.content is not None
        assert len(choice.logprobs.content) == reply.usage.completion_tokens
        assert all(len(entry.top_logprobs) == 2 for entry in choice.logprobs.content)
        if stop is not None:
            assert stop not in (choice.message.content or "")


def test_a_prompt_too_long_for_its_share_is_refused(api: openai.OpenAI) -> None:
    share = CONTEXT // PARALLEL
    long_text = "word " * (share + 50)  # fits the whole context, not one sequence's share of it
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(
            model="m", messages=[{"role": "user", "content": long_text}], max_tokens=5, temperature=0
        )
    assert caught.value.code == "context_length_exceeded"
    # A completion too.
    with pytest.raises(openai.BadRequestError) as caught:
        api.completions.create(model="m", prompt=long_text, max_tokens=5, temperature=0)
    assert caught.value.code == "context_length_exceeded"


def test_completions_and_an_echo_beside_chats(api: openai.OpenAI) -> None:
    def complete(echo: bool) -> openai.types.Completion:
        return api.completions.create(
            model="m", prompt="Once upon a time", max_tokens=30, temperature=0, echo=echo
        )

    with ThreadPoolExecutor(3) as pool:
        chat = pool.submit(_stream, api, 50)
        plain = pool.submit(complete, False)
        echoed = pool.submit(complete, True)  # not batched: it runs alone once the batch drains
        assert chat.result()[0]
        plain_reply, echoed_reply = plain.result(), echoed.result()
    assert plain_reply.choices[0].text and plain_reply.usage is not None
    assert 0 < plain_reply.usage.completion_tokens <= 30
    assert echoed_reply.choices[0].text.startswith("Once upon a time")
