"""The request fields of function calling and structured output, checked: ``tools``, ``tool_choice``,
``parallel_tool_calls``, the tool fields of messages, and ``response_format``. Each wrong one is a 400 sentence
naming it; a JSON schema the grammar cannot enforce is refused naming the keyword (``app.core.llm.grammars``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.core.llm.context import ChatMessage
from app.core.llm.engine import ModelInfo
from app.core.llm.grammars import JSON_OBJECT_GRAMMAR, schema_grammar
from app.core.llm.schema_check import GrammarError
from app.core.llm.tools import Tool, ToolChoice, ToolFormat, call_grammar, call_trigger, prompt_messages
from app.core.serve.errors import ApiError

log = logging.getLogger(__name__)

MAX_TOOLS = 128  # OpenAI's own limit on tools per request
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@dataclass(frozen=True)
class ToolUse:
    """A request's tools: what the model is shown, what it may or must answer, and how its calls are read."""

    tools: list[Tool]
    choice: ToolChoice
    parallel: bool
    format: ToolFormat
    messages: list[ChatMessage]  # the conversation as the model's template receives it
    template_tools: list[dict[str, Any]] | None  # for a template that lays tools out itself
    grammar: str | None  # set when a call is forced, or may begin ("auto", with ``grammar_triggers``)
    grammar_triggers: tuple[str, ...] = ()  # the grammar waits for a call to begin (tool_choice "auto")

    @property
    def forced(self) -> bool:
        """The reply must be calls: its grammar holds from the first token."""
        return self.grammar is not None and not self.grammar_triggers


def tool_use(body: Mapping[str, object], messages: list[ChatMessage], model: ModelInfo) -> ToolUse | None:
    """The request's tools, or None when it has none (or ``tool_choice`` is "none" and no tool is in play)."""
    tools = _tools(body.get("tools"))
    choice = _choice(body.get("tool_choice"), tools)
    parallel = body.get("parallel_tool_calls", True)
    if parallel is None:
        parallel = True
    if not isinstance(parallel, bool):
        raise ApiError(
            400, "'parallel_tool_calls' must be true or false.", "invalid_type", "parallel_tool_calls"
        )
    if not tools:
        return None
    # A function named in tool_choice is the one call the reply is made of (a tiny model forced to call "one or
    # more" repeats the same call until max_tokens).
    parallel = parallel and choice.mode != "function"
    fmt = ToolFormat(model.tool_format)
    shown, template_tools = prompt_messages(
        [dict(m) for m in messages],
        tools,
        choice,
        fmt,
    )
    triggers: tuple[str, ...] = ()
    try:
        grammar = call_grammar(tools, choice, fmt, parallel=parallel)
    except GrammarError as exc:  # the reply must be a call its grammar cannot enforce
        raise ApiError(400, str(exc), "invalid_value", "tools") from None
    trigger = call_trigger(fmt) if choice.mode == "auto" else None
    if trigger is not None:
        # Free to answer in prose, but a call the model opens is held to the tools' schemas; when a schema
        # has what a grammar cannot enforce, its calls are read as the model writes them.
        try:
            grammar = call_grammar(tools, ToolChoice("required"), fmt, parallel=parallel)
            triggers = (trigger,)
        except GrammarError as exc:
            log.info("tool calls are not constrained for this request: %s", exc)
    return ToolUse(
        tools,
        choice,
        parallel,
        fmt,
        [ChatMessage(**m) for m in shown],  # type: ignore[typeddict-item]
        template_tools,
        grammar,
        triggers,
    )


def message_tool_fields(message: Mapping[str, object], role: str, where: str) -> dict[str, Any]:
    """The tool fields of one message, checked: an assistant's ``tool_calls``, a tool result's
    ``tool_call_id`` (and ``name``)."""
    fields: dict[str, Any] = {}
    calls = message.get("tool_calls")
    if calls is not None:
        if role != "assistant":
            raise ApiError(
                400,
                f"{where}.tool_calls belongs on an assistant message.",
                "invalid_value",
                f"{where}.tool_calls",
            )
        if not isinstance(calls, list):
            raise ApiError(400, f"{where}.tool_calls must be a list.", "invalid_type", f"{where}.tool_calls")
        fields["tool_calls"] = [_call(call, f"{where}.tool_calls[{i}]") for i, call in enumerate(calls)]
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise ApiError(
                400,
                f"{where} is a tool result without its 'tool_call_id' (the id of the call it answers).",
                "invalid_value",
                f"{where}.tool_call_id",
            )
        fields["tool_call_id"] = call_id
    name = message.get("name")
    if isinstance(name, str) and name:
        fields["name"] = name[:256]
    return fields


def structured_output(value: object) -> str | None:
    """The grammar a ``response_format`` asks for: None for text, any JSON object, or a JSON schema's."""
    if value is None:
        return None
    where = "response_format"
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ApiError(400, "'response_format' must be an object with a 'type'.", "invalid_type", where)
    kind = value["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT_GRAMMAR
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise ApiError(
                400,
                "'response_format.json_schema' must be an object with a 'name' and a 'schema'.",
                "invalid_value",
                "response_format.json_schema",
            )
        try:
            return schema_grammar(spec["schema"], where="response_format.json_schema.schema")
        except GrammarError as exc:
            raise ApiError(400, str(exc), "invalid_value", "response_format.json_schema.schema") from None
    raise ApiError(
        400,
        f"'response_format.type' must be text, json_object or json_schema, not {kind[:40]!r}.",
        "invalid_value",
        "response_format.type",
    )


def _tools(value: object) -> list[Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ApiError(400, "'tools' must be a list of functions.", "invalid_type", "tools")
    if len(value) > MAX_TOOLS:
        raise ApiError(
            400, f"'tools' holds {len(value)} tools; at most {MAX_TOOLS} are taken.", "invalid_value", "tools"
        )
    tools: list[Tool] = []
    for index, entry in enumerate(value):
        where = f"tools[{index}]"
        function = entry.get("function") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or entry.get("type") != "function" or not isinstance(function, dict):
            raise ApiError(
                400,
                f"{where} must be {{'type': 'function', 'function': {{'name': ..., 'parameters': ...}}}}.",
                "invalid_value",
                where,
            )
        name = function.get("name")
        if not isinstance(name, str) or not name or len(name) > 64 or not set(name) <= _NAME_CHARACTERS:
            raise ApiError(
                400,
                f"{where}.function.name must be 1 to 64 letters, digits, underscores or dashes.",
                "invalid_value",
                f"{where}.function.name",
            )
        if any(tool.name == name for tool in tools):
            raise ApiError(
                400, f"Two tools are named {name!r}; each needs its own name.", "invalid_value", where
            )
        description = function.get("description") or ""
        if not isinstance(description, str):
            raise ApiError(
                400,
                f"{where}.function.description must be text.",
                "invalid_type",
                f"{where}.function.description",
            )
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise ApiError(
                400,
                f"{where}.function.parameters must be a JSON schema object.",
                "invalid_type",
                f"{where}.function.parameters",
            )
        tools.append(Tool(name, description, parameters))
    return tools


def _choice(value: object, tools: list[Tool]) -> ToolChoice:
    where = "tool_choice"
    if value is None:
        return ToolChoice("auto" if tools else "none")
    if value in ("none", "auto", "required"):
        if value == "required" and not tools:
            raise ApiError(
                400, "'tool_choice' is \"required\" but the request has no 'tools'.", "invalid_value", where
            )
        return ToolChoice.from_openai(value)
    if (
        isinstance(value, dict)
        and value.get("type") == "function"
        and isinstance(value.get("function"), dict)
    ):
        name = value["function"].get("name")
        if not any(tool.name == name for tool in tools):
            raise ApiError(
                400,
                f"'tool_choice' names the function {str(name)[:64]!r}, which is not among the request's tools.",
                "invalid_value",
                where,
            )
        return ToolChoice("function", str(name))
    raise ApiError(
        400,
        "'tool_choice' must be \"none\", \"auto\", \"required\" or {'type': 'function', 'function': {'name': ...}}.",
        "invalid_value",
        where,
    )


def _call(value: object, where: str) -> dict[str, Any]:
    """One call an assistant made, in OpenAI's shape, its arguments kept as the JSON text they are."""
    function = value.get("function") if isinstance(value, dict) else None
    if (
        not isinstance(value, dict)
        or not isinstance(function, dict)
        or not isinstance(function.get("name"), str)
    ):
        raise ApiError(
            400,
            f"{where} must be {{'id': ..., 'type': 'function', 'function': {{'name': ..., 'arguments': ...}}}}.",
            "invalid_value",
            where,
        )
    arguments = function.get("arguments", "{}")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    call_id = value.get("id")
    return {
        "id": call_id if isinstance(call_id, str) else "",
        "type": "function",
        "function": {"name": function["name"], "arguments": arguments},
    }
