"""Every field of a request body is checked: a wrong type or range is a 400 sentence naming the field."""

from __future__ import annotations

import pytest

from app.core.serve.errors import ApiError
from app.core.serve.requests import MAX_STOP_SEQUENCES, chat_request, completion_request
from tests.helpers.models import model_info

USER = [{"role": "user", "content": "hi"}]


def refusal(body: dict[str, object], context: int = 2048) -> ApiError:
    with pytest.raises(ApiError) as caught:
        chat_request(body, model_info(context))
    assert caught.value.status == 400
    print(caught.value.message)
    return caught.value


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": 1, "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
        ({"messages": USER, "temperature": "hot"}, "temperature"),
        ({"messages": USER, "temperature": 99}, "temperature"),
        ({"messages": USER, "temperature": float("nan")}, "temperature"),
        ({"messages": USER, "top_p": 0}, "top_p"),
        ({"messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"messages": USER, "max_tokens": 2.5}, "max_tokens"),
        ({"messages": USER, "max_tokens": True}, "max_tokens"),
        ({"messages": USER, "max_tokens": 2048}, "max_tokens"),  # the whole context: no room for the prompt
        ({"messages": USER, "max_completion_tokens": 10**9}, "max_completion_tokens"),
        ({"messages": USER, "seed": "1"}, "seed"),
        ({"messages": USER, "seed": 1 << 70}, "seed"),
        ({"messages": USER, "stop": ""}, "stop"),
        ({"messages": USER, "stop": [1]}, "stop"),
        ({"messages": USER, "stop": ["a"] * (MAX_STOP_SEQUENCES + 1)}, "stop"),
        ({"messages": USER, "stream": "yes"}, "stream"),
        ({"messages": USER, "stream_options": 1}, "stream_options"),
        ({"messages": USER, "n": 2}, "n"),
        ({"messages": USER, "foo_bar": 1}, "foo_bar"),  # never silently dropped
        ({"messages": USER, "functions": [{"name": "f"}]}, "functions"),
        ({"messages": USER, "modalities": ["text", "audio"]}, "modalities"),
        ({"messages": USER, "top_k": -1}, "top_k"),
        ({"messages": USER, "min_p": 2}, "min_p"),
        ({"messages": USER, "logit_bias": {"\u00b2": 5}}, "logit_bias"),  # a digit to Unicode, not a token id
        ({"messages": USER, "logit_bias": {"\uff11\uff12": 5}}, "logit_bias"),
        ({"messages": USER, "logit_bias": {"12": 101}}, "logit_bias"),
        ({"messages": USER, "logit_bias": []}, "logit_bias"),
        ({"messages": USER, "frequency_penalty": 3}, "frequency_penalty"),
        ({"messages": USER, "presence_penalty": "1"}, "presence_penalty"),
        ({"messages": USER, "top_logprobs": 2}, "top_logprobs"),  # without logprobs
        ({"messages": USER, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"messages": USER, "response_format": {"type": "yaml"}}, "response_format.type"),
        (
            {"messages": USER, "tools": [{"type": "function", "function": {"name": "a b"}}]},
            "tools[0].function.name",
        ),
        ({"messages": USER, "tools": [], "tool_choice": "required"}, "tool_choice"),
        (
            {
                "messages": USER,
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
        ),
        ({"messages": [{"role": "tool", "content": "21 degrees"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "user", "content": "hi", "tool_calls": []}]}, "messages[0].tool_calls"),
    ],
)
def test_wrong_types_and_ranges_are_refused_naming_the_field(body: dict[str, object], param: str) -> None:
    assert refusal(body).param == param


def test_a_valid_request_becomes_the_engine_options() -> None:
    request = chat_request(
        {
            "model": "anything",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Capital of "}, {"type": "text", "text": "France?"}],
                },
            ],
            "temperature": 0,
            "top_p": 0.5,
            "max_tokens": 7,
            "seed": -1,
            "stop": "\n",
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        model_info(2048),
    )
    assert request.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert (request.sampling.temperature, request.sampling.top_p, request.sampling.max_tokens) == (0, 0.5, 7)
    assert request.sampling.seed == 0xFFFFFFFF
    assert (request.stops, request.stream, request.include_usage) == (("\n",), True, True)


def test_max_tokens_defaults_within_a_small_context() -> None:
    assert chat_request({"messages": USER}, model_info(512)).sampling.max_tokens == 256


def test_a_completion_prompt_is_taken_as_given() -> None:
    request = completion_request({"prompt": ["Once upon a time"]}, model_info(2048))
    assert (request.prompt, request.messages) == ("Once upon a time", [])
    assert completion_request({"prompt": [[1, 2, 3]]}, model_info(2048)).prompt == [1, 2, 3]
    with pytest.raises(ApiError):
        completion_request({"prompt": ["a", "b"]}, model_info(2048))
    with pytest.raises(ApiError):
        completion_request({"prompt": 42}, model_info(2048))


def test_labels_and_llama_cpp_s_sampling_fields_are_taken() -> None:
    request = chat_request(
        {"messages": USER, "user": "u1", "metadata": {"a": "b"}, "store": False, "top_k": 5, "min_p": 0.1,
         "repeat_penalty": 1.2, "reasoning_effort": "low", "modalities": ["text"]},
        model_info(),
    )  # fmt: skip
    assert (request.sampling.top_k, request.sampling.min_p, request.sampling.repeat_penalty) == (5, 0.1, 1.2)
