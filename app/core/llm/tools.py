"""Function calling for the OpenAI-compatible API: tools into the prompt, calls out of the reply.

A model whose chat template handles tools itself (Llama 3.x, Qwen 2.5/3 and Hermes, Mistral) is given the tools
and the earlier calls as OpenAI sends them, and answers in its own format. Every other model (the small test
models among them) gets the *generic* format: a system message that lists the tools and asks for
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, with earlier calls and results written back into
the conversation as plain text, since its template knows nothing of them.

``tool_choice`` "required" or a named function is enforced with a grammar (``call_grammar``); "auto" leaves the
model free and ``parse_calls`` finds whatever calls it made.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any, Literal

from app.core.errors import UserError
from app.core.llm import grammars


class ToolError(UserError):
    """A request whose tools or tool_choice cannot be used; the HTTP layer answers 400."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # compact JSON text, as OpenAI returns it


@dataclass(frozen=True)
class ToolChoice:
    """OpenAI's tool_choice: "none", "auto", "required", or one function by name (mode "function")."""

    mode: Literal["none", "auto", "required", "function"]
    name: str | None = None

    @classmethod
    def from_openai(cls, value: object) -> ToolChoice:
        """``tool_choice`` as a request carries it: a string or ``{"type": "function", "function": {"name"}}``."""
        if value is None:
            return cls("auto")
        if value in ("none", "auto", "required"):
            return cls(value)
        if isinstance(value, dict):
            function = value.get("function")
            name = function.get("name") if isinstance(function, dict) else None
            if value.get("type") == "function" and isinstance(name, str) and name:
                return cls("function", name)
        raise ToolError(
            'The request\'s tool_choice is not "none", "auto", "required" or {"type": "function", "function": '
            '{"name": ...}}; correct it and try again.'
        )


class ToolFormat(enum.Enum):
    GENERIC = "generic"  # ours, for templates that do not handle tools
    HERMES = "hermes"  # Qwen 2.5/3, Hermes: <tool_call>\n{"name", "arguments"}\n</tool_call>
    LLAMA3 = "llama3"  # Llama 3.x: {"name", "parameters"}, optionally after <|python_tag|>
    MISTRAL = "mistral"  # [TOOL_CALLS][{"name", "arguments"}, ...]


TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
MISTRAL_CALLS = "[TOOL_CALLS]"


def tool_format(template_source: str) -> ToolFormat:
    """The format a chat template writes tool calls in, if it handles tools itself; else GENERIC."""
    if "tools" not in template_source:
        return ToolFormat.GENERIC
    if MISTRAL_CALLS in template_source:
        return ToolFormat.MISTRAL
    if TOOL_CALL_OPEN in template_source:
        return ToolFormat.HERMES
    if PYTHON_TAG in template_source or (
        "<|start_header_id|>" in template_source and "ipython" in template_source
    ):
        return ToolFormat.LLAMA3
    return ToolFormat.GENERIC


def openai_tools(tools: list[Tool]) -> list[dict[str, Any]]:
    """The tools as a template reads them: OpenAI's ``[{"type": "function", "function": {...}}]``."""
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools
    ]


def prompt_messages(
    messages: list[dict[str, Any]], tools: list[Tool], choice: ToolChoice, fmt: ToolFormat
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The messages to render and the ``tools`` value to give the template (None for GENERIC or no tools)."""
    if fmt is ToolFormat.GENERIC:
        plain = _plain_history(messages)
        if tools and choice.mode != "none":
            plain = _with_system_text(plain, generic_instructions(tools, choice))
        return _merged_turns(plain), None
    native = [_native_message(m, fmt) for m in messages]
    return native, (openai_tools(tools) if tools and choice.mode != "none" else None)


def generic_instructions(tools: list[Tool], choice: ToolChoice) -> str:
    """The system text that teaches a model without tool support to call ``tools``."""
    listed = "\n".join(
        f"- {t.name}: {t.description.strip() or 'no description'}\n"
        f"  Parameters (JSON schema): {json.dumps(t.parameters or {'type': 'object'}, ensure_ascii=False)}"
        for t in tools
    )
    if choice.mode == "function":
        rule = f"You must call the tool {choice.name} now."
    elif choice.mode == "required":
        rule = "You must call one or more of these tools now."
    else:
        rule = "Call a tool when it helps to answer; otherwise answer normally."
    return (
        f"You can call these tools:\n{listed}\n\n"
        "To call a tool, reply with only this, one line per call:\n"
        f'{TOOL_CALL_OPEN}{{"name": "TOOL_NAME", "arguments": {{...}}}}{TOOL_CALL_CLOSE}\n'
        "where the arguments follow the tool's parameters. The results will come back in the next message. "
        + rule
    )


def _text(content: object) -> str:
    """A message's content as text: OpenAI allows a list of parts, of which text parts are kept."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return str(content)


def _arguments_object(arguments: object) -> object:
    """Arguments as a value: OpenAI sends them as JSON text; text that is not JSON stays text."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments


def _call_parts(call: object) -> tuple[str, str, object]:
    """(id, name, arguments) of an OpenAI tool call in a request's history."""
    if not isinstance(call, dict):
        return "", "", {}
    function = call.get("function") if isinstance(call.get("function"), dict) else call
    assert isinstance(function, dict)
    return str(call.get("id", "")), str(function.get("name", "")), function.get("arguments", {})


def generic_call_text(name: str, arguments: object) -> str:
    """One call written the way the generic instructions ask for it."""
    body = json.dumps({"name": name, "arguments": _arguments_object(arguments)}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}"


def _plain_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls and results written as text, for a template that only knows system, user and assistant."""
    names: dict[str, str] = {}
    plain: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = _text(message.get("content"))
        if role == "assistant" and message.get("tool_calls"):
            lines = [content.strip()] if content.strip() else []
            for call in message["tool_calls"]:
                call_id, name, arguments = _call_parts(call)
                names[call_id] = name
                lines.append(generic_call_text(name, arguments))
            plain.append({"role": "assistant", "content": "\n".join(lines)})
        elif role in ("tool", "function"):
            call_id = str(message.get("tool_call_id", ""))
            name = names.get(call_id) or str(message.get("name") or "the tool")
            label = f"{name} (call {call_id})" if call_id else name
            plain.append({"role": "user", "content": f"Result of {label}:\n{content}"})
        else:
            plain.append({"role": str(role), "content": content})
    return plain


def _with_system_text(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    if messages and messages[0]["role"] == "system":
        first = messages[0]["content"].rstrip()
        return [{"role": "system", "content": f"{first}\n\n{text}" if first else text}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _merged_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive messages of one role joined into one: templates such as Gemma's insist that user and
    assistant alternate, and a call's results arrive as several user messages in a row."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        if merged and merged[-1]["role"] == message["role"]:
            merged[-1] = {
                "role": message["role"],
                "content": f"{merged[-1]['content']}\n\n{message['content']}",
            }
        else:
            merged.append(dict(message))
    return merged


def _mistral_id(call_id: str) -> str:
    """Mistral's templates refuse any call id that is not 9 letters or digits; a stable one per OpenAI id."""
    return hashlib.sha256(call_id.encode("utf-8")).hexdigest()[:9]


def _native_message(message: dict[str, Any], fmt: ToolFormat) -> dict[str, Any]:
    """A message as OpenAI gives it, with what tool templates trip over smoothed: arguments as a dict (Llama 3.x
    and Qwen write ``arguments | tojson``), no None content, and Mistral's 9-character ids."""
    out = dict(message)
    if out.get("content") is None:
        out["content"] = ""
    if out.get("role") == "assistant" and out.get("tool_calls"):
        calls = []
        for call in out["tool_calls"]:
            call_id, name, arguments = _call_parts(call)
            if fmt is ToolFormat.MISTRAL:
                call_id = _mistral_id(call_id)
            function = {"name": name, "arguments": _arguments_object(arguments)}
            calls.append({"id": call_id, "type": "function", "function": function, **function})
        out["tool_calls"] = calls
    if out.get("role") == "tool" and fmt is ToolFormat.MISTRAL and out.get("tool_call_id"):
        out["tool_call_id"] = _mistral_id(str(out["tool_call_id"]))
    return out


MAX_PARALLEL_CALLS = 4


def call_grammar(
    tools: list[Tool],
    choice: ToolChoice,
    fmt: ToolFormat,
    *,
    parallel: bool,
    max_calls: int = MAX_PARALLEL_CALLS,
) -> str | None:
    """GBNF forcing the reply to be calls (one, or with ``parallel`` one to ``max_calls``) in ``fmt`` to
    ``tools`` (or the one ``choice`` names), their arguments following each tool's parameters; None when the
    model is free. Raises ToolError for a named tool that is not listed, GrammarError for parameters it cannot
    enforce. The cap exists because a small model forced to call tends to repeat its call until max_tokens."""
    if choice.mode in ("none", "auto"):
        return None
    if not tools:
        raise ToolError(
            f'The request sets tool_choice to "{choice.mode}" but lists no tools; add them and try again.'
        )
    chosen = [t for t in tools if choice.mode == "required" or t.name == choice.name]
    if not chosen:
        raise ToolError(
            f"The request's tool_choice names the function {choice.name!r}, which is not among its tools; "
            "name one of them and try again."
        )
    converter = grammars.new_converter()
    key = "parameters" if fmt is ToolFormat.LLAMA3 else "arguments"
    alternatives = []
    for index, tool in enumerate(tools):
        if tool not in chosen:
            continue
        arguments = grammars.schema_rules(
            converter,
            closed_schema(tool.parameters or {"type": "object", "properties": {}}),
            f"t{index}",
            f"tools[{index}].function.parameters",
        )
        name_literal = grammars.gbnf_literal(json.dumps(tool.name, ensure_ascii=False))
        key_literal = grammars.gbnf_literal(f'"{key}"')
        alternatives.append(
            f'"{{" space "\\"name\\"" space ":" space {name_literal} space "," space '
            f'{key_literal} space ":" space {arguments} "}}" space'
        )
    call = "call ::= " + " | ".join(alternatives)
    extra = max(max_calls, 1) - 1 if parallel else 0

    def repeated(item: str, separator: str) -> str:
        return item + f" ({separator} {item}" * extra + ")?" * extra

    if fmt is ToolFormat.MISTRAL:
        calls = repeated("call", '"," space')
        root = f'"{MISTRAL_CALLS}[" space {calls} "]"'
    elif fmt is ToolFormat.LLAMA3:
        root = repeated("call", '"\\n"')
    else:
        newline = '"\\n"' if fmt is ToolFormat.HERMES else ""
        block = f'"{TOOL_CALL_OPEN}" {newline} call {newline} "{TOOL_CALL_CLOSE}"'.replace("  ", " ")
        blocks = repeated("block", '"\\n"')
        root = f"{blocks}\nblock ::= {block}"
    return grammars.grammar_text(converter, "calls") + f"{call}\ncalls ::= {root}\n"


def closed_schema(schema: Any) -> Any:
    """``schema`` with every object that does not say otherwise closed to the properties it lists: a call's
    arguments hold what the tool declares, and a tool with no parameters gets ``{}`` (as OpenAI's models do),
    not keys a small model invents under the grammar."""
    if isinstance(schema, list):
        return [closed_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: closed_schema(value) for key, value in schema.items()}
    is_object = schema.get("type") == "object" or "properties" in schema
    if is_object and "additionalProperties" not in schema and "patternProperties" not in schema:
        closed["additionalProperties"] = False
    return closed


def call_trigger(fmt: ToolFormat) -> str | None:
    """A regular expression (llama.cpp's, ECMAScript) matching a reply in which a call has begun, its group
    where the call starts: with tool_choice "auto" the call grammar waits for it (a lazy grammar, as llama.cpp's
    server does), so the model writes prose freely and a call it opens is held to the tools' schemas. None for
    a format whose calls open with no marker (Llama 3.x's bare JSON): its calls are only parsed."""
    marker = {
        ToolFormat.GENERIC: TOOL_CALL_OPEN,
        ToolFormat.HERMES: TOOL_CALL_OPEN,
        ToolFormat.MISTRAL: MISTRAL_CALLS,
    }.get(fmt)
    # Unanchored: llama.cpp searches the reply for it; an anchored "^[\s\S]*?(...)[\s\S]*$" would make
    # std::regex recurse once per character of a long reply.
    return None if marker is None else "(" + re.escape(marker) + ")"


_ID_ALPHABET = string.ascii_letters + string.digits


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def _as_call(value: object, keys: tuple[str, ...]) -> ToolCall | None:
    """A ToolCall from a decoded ``{"name": ..., "arguments": {...}}``, or None if it is not one."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        return None
    arguments: object = next((value[k] for k in keys if k in value), {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    compact = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    return ToolCall(new_call_id(), value["name"], compact)


_BLOCK = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)(?:" + re.escape(TOOL_CALL_CLOSE) + r"|\Z)", re.DOTALL)
_DECODER = json.JSONDecoder()


def _json_sequence(text: str, separators: str) -> list[object] | None:
    """Every JSON value in ``text``, separated by whitespace or ``separators``; None if anything else is there."""
    values: list[object] = []
    position = 0
    while True:
        while position < len(text) and (text[position].isspace() or text[position] in separators):
            position += 1
        if position == len(text):
            return values
        try:
            value, position = _DECODER.raw_decode(text, position)
        except json.JSONDecodeError:
            return None
        values.append(value)


def parse_calls(text: str, fmt: ToolFormat) -> tuple[str, list[ToolCall]]:
    """The content left and the calls found in a whole reply; a call whose JSON does not parse stays content.
    A call repeated word for word is one call: a small model forced to call tends to repeat its call."""
    content, calls = _parsed_calls(text, fmt)
    unique: list[ToolCall] = []
    for call in calls:
        if not any(call.name == seen.name and call.arguments == seen.arguments for seen in unique):
            unique.append(call)
    return content, unique


def _parsed_calls(text: str, fmt: ToolFormat) -> tuple[str, list[ToolCall]]:
    if fmt in (ToolFormat.GENERIC, ToolFormat.HERMES):
        calls: list[ToolCall] = []

        def take(match: re.Match[str]) -> str:
            values = _json_sequence(match.group(1), "")
            found = [_as_call(v, ("arguments", "parameters")) for v in values or []]
            if not found or any(c is None for c in found):
                return match.group(0)
            calls.extend(c for c in found if c is not None)
            return ""

        content = _BLOCK.sub(take, text)
        return (content.strip() if calls else text), calls
    if fmt is ToolFormat.LLAMA3:
        if PYTHON_TAG in text:
            before, _, payload = text.partition(PYTHON_TAG)
        elif text.lstrip().startswith("{"):
            before, payload = "", text
        else:
            return text, []
        return _all_or_nothing(text, before, _json_sequence(payload, ";"), ("parameters", "arguments"))
    before, marker, payload = text.partition(MISTRAL_CALLS)
    if not marker:
        return text, []
    values = _json_sequence(payload, "")
    flat = (
        [v for group in values for v in (group if isinstance(group, list) else [group])] if values else None
    )
    return _all_or_nothing(text, before, flat, ("arguments", "parameters"))


def _all_or_nothing(
    text: str, before: str, values: list[object] | None, keys: tuple[str, ...]
) -> tuple[str, list[ToolCall]]:
    found = [_as_call(v, keys) for v in values or []]
    if not found or any(c is None for c in found):
        return text, []
    return before.strip(), [c for c in found if c is not None]


class CallStream:
    """Streams a reply's content while holding back what may be a tool call.

    ``feed`` returns the text that cannot be part of a call, at once; from the first call marker on (or, for
    Llama 3.x, a reply that opens with ``{``) the text is held, and ``finish`` parses it into calls and the
    content that remains."""

    def __init__(self, fmt: ToolFormat) -> None:
        self.fmt = fmt
        self._markers = {
            ToolFormat.GENERIC: (TOOL_CALL_OPEN,),
            ToolFormat.HERMES: (TOOL_CALL_OPEN,),
            ToolFormat.LLAMA3: (PYTHON_TAG,),
            ToolFormat.MISTRAL: (MISTRAL_CALLS,),
        }[fmt]
        self._pending = ""  # not yet sent: a possible start of a marker, or everything after one
        self._holding = False
        self._started = False  # any non-space text seen (Llama 3.x calls are whole replies)

    def feed(self, piece: str) -> str:
        self._pending += piece
        if self._holding:
            return ""
        if self.fmt is ToolFormat.LLAMA3 and not self._started:
            stripped = self._pending.lstrip()
            if not stripped:
                return ""
            self._started = True
            if stripped.startswith("{"):
                self._holding = True
                return ""
        for marker in self._markers:
            at = self._pending.find(marker)
            if at >= 0:
                self._holding = True
                sent, self._pending = self._pending[:at], self._pending[at:]
                return sent
        keep = max((_partial_suffix(self._pending, m) for m in self._markers), default=0)
        sent, self._pending = (
            self._pending[: len(self._pending) - keep],
            self._pending[len(self._pending) - keep :],
        )
        return sent

    def finish(self) -> tuple[str, list[ToolCall]]:
        """The content not yet sent and the calls; call once, after the last ``feed``."""
        rest, self._pending = self._pending, ""
        if not self._holding:
            return rest, []
        content, calls = parse_calls(rest, self.fmt)
        return content, calls


def _partial_suffix(text: str, marker: str) -> int:
    """The length of the longest end of ``text`` that is a beginning of ``marker``."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
