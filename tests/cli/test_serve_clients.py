"""``llamadesk serve`` under the clients people build on, with both test models: the ``openai`` client (chat,
streams, ``parse()``, tools, completions, log-probabilities), ``langchain-openai`` (``bind_tools``,
``with_structured_output``) and ``litellm``. Tool calls and structured replies must validate against their
schemas on each model; the models' wording is never asserted."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from tests.cli.test_serve import Server, start_server

KEY = "clients-key"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 24},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 24}},
            "required": ["city"],
        },
    },
}
TOOLS: list[Any] = [WEATHER, TIME]
ASK_WEATHER: list[Any] = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}


class City(BaseModel):
    name: str = Field(max_length=24)
    country: str = Field(max_length=24)
    population: int


def serving(model: Path, home: Path) -> Iterator[Server]:
    started = start_server(model, home, "--api-key", KEY)
    yield started
    started.process.send_signal(signal.SIGINT)
    _out, err = started.process.communicate(timeout=30)
    assert started.process.returncode == 0, err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def server(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """SmolLM2 here; tests/cli/test_serve_clients_gemma.py runs every test of this module on Gemma 3 270M (a
    module of its own, so the two run side by side in the suite's worker processes)."""
    yield from serving(smollm2_path, tmp_path_factory.mktemp("clients-home"))


def client(server: Server) -> openai.OpenAI:
    return server.client(KEY)


def assert_valid_calls(calls: list[Any], names: set[str]) -> None:
    assert calls
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name in names
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


# -- tools --------------------------------------------------------------------------------------------------


def test_a_named_tool_is_called_with_arguments_that_validate(server: Server) -> None:
    reply = client(server).chat.completions.create(
        model="m",
        messages=ASK_WEATHER,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=120,
    )
    choice = reply.choices[0]
    print(choice.message)
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert_valid_calls(choice.message.tool_calls or [], {"get_weather"})
    assert len(choice.message.tool_calls or []) == 1


def test_required_calls_stream_as_openai_deltas(server: Server) -> None:
    chunks = list(
        client(server).chat.completions.create(
            model="m",
            messages=ASK_WEATHER,
            tools=TOOLS,
            tool_choice="required",
            parallel_tool_calls=False,
            temperature=0,
            max_tokens=120,
            stream=True,
        )
    )
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    calls = [call for delta in deltas for call in delta.tool_calls or []]
    print(calls)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert not "".join(delta.content or "" for delta in deltas).strip()  # the call is no prose
    assert len(calls) == 1 and calls[0].index == 0
    assert_valid_calls(calls, {"get_weather", "get_time"})


def test_a_tool_without_parameters_is_called_with_none(server: Server) -> None:
    """As OpenAI's models call it: ``{}``, not keys a small model invents; a call repeated is one call."""
    now = {"type": "function", "function": {"name": "now", "description": "The current time."}}
    reply = client(server).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "What time is it?"}],
        tools=[now],
        tool_choice="required",
        temperature=0,
        max_tokens=120,
    )
    calls = reply.choices[0].message.tool_calls or []
    print(reply.choices[0])
    assert calls and all(json.loads(call.function.arguments) == {} for call in calls)
    assert len(calls) == 1 and reply.choices[0].message.content is None
    assert reply.choices[0].finish_reason in {"tool_calls", "length"}


def test_a_tool_round_trip_is_answered(server: Server) -> None:
    """The assistant's call (null content) and the tool's result go back; the model answers them."""
    conversation: list[Any] = [
        *ASK_WEATHER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21, "sky": "clear"}'},
    ]
    reply = client(server).chat.completions.create(
        model="m", messages=conversation, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=40
    )
    print(reply.choices[0].message)
    assert reply.choices[0].message.content and not reply.choices[0].message.tool_calls


def test_langchain_bind_tools_gets_tool_calls(server: Server) -> None:
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(base_url=server.base_url, api_key=KEY, model="m", temperature=0, max_tokens=120)
    message = model.bind_tools(TOOLS, tool_choice="get_weather").invoke(ASK_WEATHER[0]["content"])
    print(message.tool_calls)
    assert [call["name"] for call in message.tool_calls] == ["get_weather"]
    jsonschema.validate(message.tool_calls[0]["args"], SCHEMAS["get_weather"])


def test_litellm_gets_tool_calls(server: Server) -> None:
    import litellm

    reply = litellm.completion(
        model="openai/m",
        api_base=server.base_url,
        api_key=KEY,
        messages=ASK_WEATHER,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=120,
    )
    choice = reply.choices[0]
    print(choice.message)
    assert choice.finish_reason == "tool_calls"
    assert_valid_calls(choice.message.tool_calls, {"get_weather", "get_time"})


# -- structured output --------------------------------------------------------------------------------------


def test_openai_parse_returns_the_pydantic_object(server: Server) -> None:
    reply = client(server).chat.completions.parse(
        model="m",
        messages=[{"role": "user", "content": "Describe Paris as JSON."}],
        response_format=City,
        temperature=0,
        max_tokens=150,
    )
    print(reply.choices[0].message.content)
    assert isinstance(reply.choices[0].message.parsed, City)


def test_json_object_mode_always_parses(server: Server) -> None:
    reply = client(server).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Give me a JSON object about cats."}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=200,
    )
    content = reply.choices[0].message.content or ""
    print(content)
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)
    else:  # cut by max_tokens: what was written is still the start of one object
        assert content.lstrip().startswith("{")


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output(server: Server, method: str) -> None:
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(base_url=server.base_url, api_key=KEY, model="m", temperature=0, max_tokens=150)
    city = model.with_structured_output(City, method=method).invoke("Describe Paris.")  # type: ignore[arg-type]
    print(city)
    assert isinstance(city, City)


def test_a_schema_feature_the_grammar_cannot_enforce_is_400_naming_it(server: Server) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "if": {"required": ["a"]}}
    with pytest.raises(openai.BadRequestError) as caught:
        client(server).chat.completions.create(
            model="m",
            messages=ASK_WEATHER,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )
    print(caught.value)
    assert "'if'" in str(caught.value)


# -- raw completions, log-probabilities, sampling -------------------------------------------------------------


def test_completions_continue_the_prompt_as_given(server: Server) -> None:
    """No chat template: the prompt's tokens are the text's own (a template would add its turn markers)."""
    prompt = "The capital of France is"
    raw = client(server).completions.create(
        model="m", prompt=prompt, temperature=0, max_tokens=8, echo=True, logprobs=2
    )
    chat = client(server).chat.completions.create(
        model="m", messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=1
    )
    choice = raw.choices[0]
    print(choice.text)
    assert raw.usage is not None and chat.usage is not None
    assert raw.usage.prompt_tokens < chat.usage.prompt_tokens
    assert choice.text.startswith(prompt)
    assert choice.logprobs is not None and choice.logprobs.tokens is not None
    assert len(choice.logprobs.tokens) == raw.usage.completion_tokens
    # The two most likely tokens, and the one drawn when it is not among them.
    assert all(len(top) <= 3 for top in choice.logprobs.top_logprobs or [])
    for token, top in zip(choice.logprobs.tokens, choice.logprobs.top_logprobs or [], strict=True):
        assert token in top
    assert choice.text.endswith("".join(choice.logprobs.tokens))


def test_a_prompt_of_token_ids_is_continued(server: Server) -> None:
    reply = client(server).completions.create(model="m", prompt=[1, 2, 3], temperature=0, max_tokens=4)
    assert reply.usage is not None and reply.usage.prompt_tokens == 3


def test_a_suffix_without_fill_in_the_middle_tokens_is_400(server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(server).completions.create(
            model="m", prompt="def add(a, b):", suffix="    return c", max_tokens=8
        )
    print(caught.value)
    assert "suffix" in str(caught.value)


def test_chat_logprobs_cover_the_tokens_returned_and_stops_end_the_count(server: Server) -> None:
    reply = client(server).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Count from one to twenty in words."}],
        temperature=0,
        max_tokens=60,
        logprobs=True,
        top_logprobs=3,
    )
    content = reply.choices[0].message.content or ""
    entries = reply.choices[0].logprobs.content or []  # type: ignore[union-attr]
    assert reply.usage is not None and len(entries) == reply.usage.completion_tokens
    assert "".join(entry.token for entry in entries).startswith(content[: len(content) // 2])
    assert all(len(entry.top_logprobs) == 3 and entry.logprob <= 0 for entry in entries)
    # A stop from the middle of that reply: the reply ends before it, and no token after it is counted.
    stop = content[len(content) // 2 : len(content) // 2 + 3]
    stopped = client(server).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Count from one to twenty in words."}],
        temperature=0,
        max_tokens=60,
        stop=[stop],
        logprobs=True,
    )
    kept = stopped.choices[0].message.content or ""
    print(repr(stop), repr(kept))
    assert stop not in kept and stopped.choices[0].finish_reason == "stop"
    assert stopped.usage is not None and stopped.usage.completion_tokens < reply.usage.completion_tokens
    kept_entries = stopped.choices[0].logprobs.content or []  # type: ignore[union-attr]
    assert len(kept_entries) == stopped.usage.completion_tokens
    tokens = "".join(entry.token for entry in kept_entries)
    assert tokens.startswith(kept) and stop.startswith(tokens[len(kept) :])  # at most a token into the stop
    # Streamed, the same tokens arrive across the chunks, and the usage counts them.
    chunks = list(
        client(server).chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "Count from one to twenty in words."}],
            temperature=0,
            max_tokens=60,
            stop=[stop],
            logprobs=True,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = [
        e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content or []
    ]
    assert chunks[-1].usage is not None and len(streamed) == chunks[-1].usage.completion_tokens == len(
        kept_entries
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == kept


def test_logit_bias_forces_a_token_and_a_token_the_model_lacks_is_400(server: Server) -> None:
    ask: list[Any] = [{"role": "user", "content": "Say something."}]
    forced = client(server).chat.completions.create(
        model="m", messages=ask, temperature=0, max_tokens=3, logprobs=True, logit_bias={"1000": 100}
    )
    entries = forced.choices[0].logprobs.content or []  # type: ignore[union-attr]
    print([entry.token for entry in entries])
    assert len(entries) == 3 and len({entry.token for entry in entries}) == 1  # token 1000, three times
    with pytest.raises(openai.BadRequestError) as caught:
        client(server).chat.completions.create(
            model="m", messages=ask, max_tokens=3, logit_bias={str(10**9): -100}
        )
    assert "logit_bias" in str(caught.value)


def test_a_seed_repeats_its_reply_and_never_sticks(server: Server) -> None:
    ask: list[Any] = [{"role": "user", "content": "Invent a name for a cat."}]

    def reply(**extra: Any) -> str:
        answer = client(server).chat.completions.create(
            model="m", messages=ask, temperature=1.5, top_p=1.0, max_tokens=24, **extra
        )
        return answer.choices[0].message.content or ""

    seeded = reply(seed=1234)
    assert reply(seed=1234) == seeded
    unseeded = [reply() for _ in range(3)]
    print(seeded, unseeded)
    assert any(text != seeded for text in unseeded)


def test_penalties_change_a_greedy_reply(server: Server) -> None:
    ask: list[Any] = [{"role": "user", "content": "Write the word 'yes' many times."}]

    def reply(**extra: Any) -> str:
        answer = client(server).chat.completions.create(
            model="m", messages=ask, temperature=0, max_tokens=48, **extra
        )
        return answer.choices[0].message.content or ""

    plain = reply()
    penalised = reply(frequency_penalty=2.0, presence_penalty=2.0)
    print(repr(plain), repr(penalised))
    assert penalised != plain
