"""Function calling: format detection, prompts that real templates render, calls parsed from every format and
from streamed pieces, and the real model forced by call_grammar into calls that validate."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine
from app.core.llm.gguf_check import check_model_file
from app.core.llm.grammars import check_grammar
from app.core.llm.load_options import LoadOptions
from app.core.llm.sampling import ReplyOptions
from app.core.llm.templates import BUILTIN_TEMPLATES, ChatTemplate
from app.core.llm.tools import (
    CallStream,
    Tool,
    ToolChoice,
    ToolError,
    ToolFormat,
    call_grammar,
    parse_calls,
    prompt_messages,
    tool_format,
)
from app.core.modes import SamplingOptions

WEATHER = Tool(
    "get_weather",
    "The weather in a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
)
ADD = Tool(
    "add",
    "Add two numbers.",
    {
        "type": "object",
        "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 1000}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
)
TOOLS = [WEATHER, ADD]

HERMES_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>"
    "<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<tool_call>\n{{ {'name': c.function.name, 'arguments': "
    "c.function.arguments} | tojson }}\n</tool_call>{% endfor %}<|im_end|>\n{% endfor %}"
)
LLAMA3_TEMPLATE = (
    "{% for m in messages %}<|start_header_id|>{{ 'ipython' if m.role == 'tool' else m.role }}<|end_header_id|>"
    "\n\n{% if m.tool_calls %}<|python_tag|>{{ {'name': m.tool_calls[0].function.name, 'parameters': "
    "m.tool_calls[0].function.arguments} | tojson }}{% else %}{{ m.content }}{% endif %}<|eot_id|>{% endfor %}"
    "{% if tools %}{{ tools | tojson }}{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{% for m in messages %}{% if m.tool_calls %}[TOOL_CALLS]{{ m.tool_calls | tojson }}"
    "{% for c in m.tool_calls %}{% if c.id | length != 9 %}{{ raise_exception('id') }}{% endif %}{% endfor %}"
    "{% else %}{{ m.content }}{% endif %}{% endfor %}{% if tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}{% endif %}"
)

ROUND_TRIP: list[dict[str, Any]] = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Weather in Paris, and 2 + 3?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees, sunny"},
    {"role": "tool", "tool_call_id": "call_2", "content": "5"},
]


def test_format_detection_on_representative_templates() -> None:
    assert tool_format(HERMES_TEMPLATE) is ToolFormat.HERMES
    assert tool_format(LLAMA3_TEMPLATE) is ToolFormat.LLAMA3
    assert tool_format(MISTRAL_TEMPLATE) is ToolFormat.MISTRAL
    for builtin in BUILTIN_TEMPLATES.values():
        assert tool_format(builtin.source) is ToolFormat.GENERIC


def test_the_test_models_template_is_generic(model_path: Path) -> None:
    assert tool_format(check_model_file(model_path).chat_template or "") is ToolFormat.GENERIC


@pytest.mark.parametrize("builtin", ["chatml", "gemma", "llama3", "mistral"])
def test_generic_round_trip_renders_through_real_templates(builtin: str) -> None:
    template = ChatTemplate.builtin(builtin, bos_token="<s>", eos_token="</s>")
    messages, tools = prompt_messages(ROUND_TRIP, TOOLS, ToolChoice("auto"), ToolFormat.GENERIC)
    assert tools is None
    roles = [m["role"] for m in messages]
    assert roles == ["system", "user", "assistant", "user"]  # consecutive results merged: Gemma alternates
    prompt = template.render(messages).prompt
    assert (
        "get_weather" in prompt and "<tool_call>" in prompt and "18 degrees" in prompt and "call_2" in prompt
    )
    assert "You are helpful." in prompt
    content, calls = parse_calls(messages[2]["content"], ToolFormat.GENERIC)
    assert [c.name for c in calls] == ["get_weather", "add"] and content == ""


def test_generic_prompt_lists_tools_only_when_they_may_be_called() -> None:
    with_tools, _ = prompt_messages(
        [{"role": "user", "content": "hi"}], TOOLS, ToolChoice("required"), ToolFormat.GENERIC
    )
    assert with_tools[0]["role"] == "system" and '"maxLength": 20' in with_tools[0]["content"]
    named, _ = prompt_messages(
        [{"role": "user", "content": "hi"}], TOOLS, ToolChoice("function", "add"), ToolFormat.GENERIC
    )
    assert "must call the tool add" in named[0]["content"]
    without, _ = prompt_messages(
        [{"role": "user", "content": "hi"}], TOOLS, ToolChoice("none"), ToolFormat.GENERIC
    )
    assert without == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("source", "fmt"),
    [
        (HERMES_TEMPLATE, ToolFormat.HERMES),
        (LLAMA3_TEMPLATE, ToolFormat.LLAMA3),
        (MISTRAL_TEMPLATE, ToolFormat.MISTRAL),
    ],
)
def test_native_formats_keep_calls_and_pass_tools_to_the_template(source: str, fmt: ToolFormat) -> None:
    messages, tools = prompt_messages(ROUND_TRIP, TOOLS, ToolChoice("auto"), fmt)
    assert tools is not None and tools[0] == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": WEATHER.description,
            "parameters": WEATHER.parameters,
        },
    }
    assert messages[2]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris", "unit": "celsius"}
    assert messages[2]["content"] == "" and messages[3]["role"] == "tool"
    environment = ImmutableSandboxedEnvironment()
    environment.filters["tojson"] = json.dumps

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    prompt = environment.from_string(source).render(
        messages=messages, tools=tools, raise_exception=raise_exception
    )
    assert "Paris" in prompt and "get_weather" in prompt
    # The app's own budgeted renderer takes the same messages (it passes tools=None today).
    assert "Paris" in ChatTemplate(source, bos_token="", eos_token="").render(messages).prompt
    if fmt is ToolFormat.MISTRAL:
        assert messages[3]["tool_call_id"] == messages[2]["tool_calls"][0]["id"]


CALL_ID = re.compile(r"^call_[A-Za-z0-9]{24}$")
PARSED: list[tuple[str, ToolFormat, str, list[tuple[str, dict[str, Any]]]]] = [
    (
        'Sure. <tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>',
        ToolFormat.GENERIC,
        "Sure.",
        [("add", {"a": 1, "b": 2})],
    ),
    (
        '<tool_call>\n{"name": "add", "arguments": "{\\"a\\": 1}"}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
        ToolFormat.HERMES,
        "",
        [("add", {"a": 1}), ("get_weather", {"city": "Oslo"})],
    ),
    # A block the model did not close before its turn ended still counts when its JSON is whole.
    ('<tool_call>{"name": "add", "arguments": {"a": 1}}', ToolFormat.GENERIC, "", [("add", {"a": 1})]),
    (
        '<tool_call>{"name": "add", "arguments": {"a": </tool_call>',
        ToolFormat.GENERIC,
        '<tool_call>{"name": "add", "arguments": {"a": </tool_call>',
        [],
    ),
    (
        '<tool_call>{"arguments": {}}</tool_call>',
        ToolFormat.HERMES,
        '<tool_call>{"arguments": {}}</tool_call>',
        [],
    ),
    ("no calls here", ToolFormat.HERMES, "no calls here", []),
    ('{"name": "add", "parameters": {"a": 1, "b": 2}}', ToolFormat.LLAMA3, "", [("add", {"a": 1, "b": 2})]),
    (
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Rome"}}',
        ToolFormat.LLAMA3,
        "",
        [("get_weather", {"city": "Rome"})],
    ),
    (
        '{"name": "add", "parameters": {"a": 1}}; {"name": "add", "parameters": {"a": 2}}',
        ToolFormat.LLAMA3,
        "",
        [("add", {"a": 1}), ("add", {"a": 2})],
    ),
    (
        '{"name": "add", "parameters": {"a": 1} and more',
        ToolFormat.LLAMA3,
        '{"name": "add", "parameters": {"a": 1} and more',
        [],
    ),
    ('{"answer": 42}', ToolFormat.LLAMA3, '{"answer": 42}', []),
    ("Paris is sunny.", ToolFormat.LLAMA3, "Paris is sunny.", []),
    (
        'Let me check. [TOOL_CALLS][{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "get_weather", "arguments": {"city": "Nice"}}]',
        ToolFormat.MISTRAL,
        "Let me check.",
        [("add", {"a": 1, "b": 2}), ("get_weather", {"city": "Nice"})],
    ),
    (
        '[TOOL_CALLS][{"name": "add", "arguments": {"a": 1}',
        ToolFormat.MISTRAL,
        '[TOOL_CALLS][{"name": "add", "arguments": {"a": 1}',
        [],
    ),
]


@pytest.mark.parametrize(("text", "fmt", "content", "expected"), PARSED)
def test_parse_calls(
    text: str, fmt: ToolFormat, content: str, expected: list[tuple[str, dict[str, Any]]]
) -> None:
    left, calls = parse_calls(text, fmt)
    assert left == content
    assert [(c.name, json.loads(c.arguments)) for c in calls] == expected
    for call in calls:
        assert CALL_ID.match(call.id)
        assert call.arguments == json.dumps(json.loads(call.arguments), separators=(",", ":"))
    assert len({c.id for c in calls}) == len(calls)


STREAMED = [
    ('Hello <tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>', ToolFormat.GENERIC),
    ("Just a plain answer with < and <tool but no call.", ToolFormat.HERMES),
    ('<|python_tag|>{"name": "add", "parameters": {"a": 1}}', ToolFormat.LLAMA3),
    ('  {"name": "add", "parameters": {"a": 1}}', ToolFormat.LLAMA3),
    ("A sentence that mentions {braces} later.", ToolFormat.LLAMA3),
    ('Checking [TOOL_CALLS][{"name": "add", "arguments": {"a": 1}}]', ToolFormat.MISTRAL),
    ("[TOOL broken [TOOL_CALLS] not json", ToolFormat.MISTRAL),
]


@pytest.mark.parametrize(("text", "fmt"), STREAMED)
def test_call_stream_matches_parse_calls_at_every_split(text: str, fmt: ToolFormat) -> None:
    expected_content, expected_calls = parse_calls(text, fmt)
    for first in range(len(text) + 1):
        for second in (first, (first + len(text)) // 2, len(text)):
            stream = CallStream(fmt)
            sent = [stream.feed(text[:first]), stream.feed(text[first:second]), stream.feed(text[second:])]
            rest, calls = stream.finish()
            assert [(c.name, c.arguments) for c in calls] == [(c.name, c.arguments) for c in expected_calls]
            streamed = "".join(sent)
            if expected_calls:
                assert (
                    "<tool_call>" not in streamed
                    and "[TOOL_CALLS]" not in streamed
                    and "python_tag" not in streamed
                )
                assert (streamed + rest).strip() == expected_content or streamed.strip() == expected_content
            else:
                assert streamed + rest == text


def test_plain_text_streams_at_once() -> None:
    stream = CallStream(ToolFormat.GENERIC)
    assert stream.feed("Hello there") == "Hello there"
    assert stream.feed(" <tool") == " "
    assert stream.feed("box>") == "<toolbox>"


def test_call_grammar_is_none_when_the_model_is_free_and_refuses_an_unknown_name() -> None:
    assert call_grammar(TOOLS, ToolChoice("auto"), ToolFormat.GENERIC, parallel=False) is None
    assert call_grammar(TOOLS, ToolChoice("none"), ToolFormat.GENERIC, parallel=True) is None
    with pytest.raises(ToolError, match="'nope'"):
        call_grammar(TOOLS, ToolChoice("function", "nope"), ToolFormat.GENERIC, parallel=False)
    with pytest.raises(ToolError):
        ToolChoice.from_openai({"type": "function"})
    assert ToolChoice.from_openai({"type": "function", "function": {"name": "add"}}) == ToolChoice(
        "function", "add"
    )


@pytest.fixture(scope="module")
def tool_engine(model_path: Path) -> Iterator[Engine]:
    """The test model in the app's engine, which generates forced calls as the API server asks it to."""
    engine = Engine()
    engine.load(model_path, LoadOptions(context_size=1024))
    yield engine
    engine.unload()


@pytest.mark.parametrize("fmt", list(ToolFormat))
def test_call_grammars_compile_in_llama_cpp(fmt: ToolFormat, tool_engine: Engine) -> None:
    # Two tools whose $defs share a name must not share rules.
    a = Tool(
        "a",
        "",
        {
            "type": "object",
            "$defs": {"v": {"type": "integer"}},
            "properties": {"v": {"$ref": "#/$defs/v"}},
            "required": ["v"],
        },
    )
    b = Tool(
        "b",
        "",
        {
            "type": "object",
            "$defs": {"v": {"type": "boolean"}},
            "properties": {"v": {"$ref": "#/$defs/v"}},
            "required": ["v"],
        },
    )
    for parallel in (False, True):
        gbnf = call_grammar([*TOOLS, a, b], ToolChoice("required"), fmt, parallel=parallel)
        assert gbnf is not None
        check_grammar(gbnf, tool_engine.llama._model.vocab)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("choice", "parallel"),
    [(ToolChoice("required"), False), (ToolChoice("function", "add"), False), (ToolChoice("required"), True)],
)
def test_the_model_under_call_grammar_makes_calls_that_validate(
    choice: ToolChoice, parallel: bool, tool_engine: Engine
) -> None:
    assert tool_engine.model is not None
    fmt = ToolFormat(tool_engine.model.tool_format)
    conversation = [
        {"role": "user", "content": "What is the weather in Paris, in celsius? And what is 2 + 3?"}
    ]
    # What the API server does with a request that forces a call (app.core.serve.tool_requests).
    messages, template_tools = prompt_messages(conversation, TOOLS, choice, fmt)
    gbnf = call_grammar(TOOLS, choice, fmt, parallel=parallel)
    assert gbnf is not None
    reply = tool_engine.chat(
        [ChatMessage(**m) for m in messages],  # type: ignore[typeddict-item]
        SamplingOptions(temperature=0.0, seed=1, repeat_penalty=1.0, max_tokens=300),
        options=ReplyOptions(grammar=gbnf, tools=template_tools, cut_history=False),
    )
    text = reply.collect()
    assert reply.stats.finish_reason == "stop"
    content, calls = parse_calls(text, fmt)
    assert content == "" and calls
    if not parallel:
        assert len(calls) == 1
    by_name = {t.name: t for t in TOOLS}
    for call in calls:
        assert call.name == (choice.name or call.name) and call.name in by_name
        jsonschema.validate(json.loads(call.arguments), by_name[call.name].parameters)
