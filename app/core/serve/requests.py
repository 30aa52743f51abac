"""A request body turned into what the engine needs, every field checked (wrong type or range: a 400 sentence).

Fields that only name or label a request (``model``, ``user``, ``metadata``, ``store``...) are accepted and
ignored, as llama.cpp's and vLLM's servers do. Every field that changes the answer is honoured (sampling, stops,
penalties, logit bias, log-probabilities, tools, response formats, echo, suffix) or, when it cannot be (``n``
above 1, images, audio), refused with a 400 rather than silently dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from app.core.limits import OutOfRange, check_max_tokens, check_temperature, check_top_p
from app.core.llm.context import ChatMessage
from app.core.llm.engine import ModelInfo
from app.core.llm.sampling import MAX_TOP_LOGPROBS, ReplyOptions
from app.core.modes import SamplingOptions
from app.core.serve.errors import ApiError
from app.core.serve.tool_requests import ToolUse, message_tool_fields, structured_output, tool_use

MAX_STOP_SEQUENCES = 4  # OpenAI's own limit
MAX_MESSAGES = 2048  # a request's messages; more is no conversation a model's context could hold
MAX_COMPLETION_LOGPROBS = 5  # OpenAI's limit for /v1/completions' integer ``logprobs``
MAX_LOGIT_BIAS = 100.0  # OpenAI's range for one token's bias: -100 (banned) to 100 (forced)
MAX_PENALTY = 2.0  # OpenAI's range for frequency and presence penalties: -2 to 2
MAX_TOP_K = 1000  # llama.cpp's top_k: 0 means the whole vocabulary
MAX_REPEAT_PENALTY = 10.0
DEFAULT_MAX_TOKENS = 1024
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
_SEED_RANGE = (-(1 << 63), (1 << 63) - 1)  # OpenAI's seed is a 64-bit integer


# Fields that shape the answer, each honoured (llama.cpp's server's top_k, min_p and repeat_penalty too).
_SAMPLING_FIELDS = frozenset(
    {
        "model", "max_tokens", "temperature", "top_p", "n", "stop", "stream", "stream_options", "seed",
        "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "response_format", "top_k", "min_p",
        "repeat_penalty",
    }
)  # fmt: skip
CHAT_FIELDS = _SAMPLING_FIELDS | {
    "messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls",
    "libraries",  # ours: answer from these libraries' passages (app.core.serve.library_context)
}  # fmt: skip
MAX_LIBRARIES = 8
COMPLETION_FIELDS = _SAMPLING_FIELDS | {"prompt", "echo", "suffix", "best_of"}
# Labels and hints that change nothing this server writes: who asks, what to keep, how hard a reasoning model
# should think (the models served here do not reason before answering).
LABEL_FIELDS = frozenset(
    {
        "user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key",
        "prompt_cache_retention", "reasoning_effort", "verbosity",
    }
)  # fmt: skip
# OpenAI's fields this server cannot honour, each refused with what to do instead.
REFUSED_FIELDS = {
    "functions": "the legacy 'functions' are not served: send them as 'tools' (type function) with 'tool_choice'",
    "function_call": "the legacy 'function_call' is not served: use 'tool_choice' with 'tools'",
    "audio": "this server writes text only",
    "prediction": "predicted outputs are not served",
    "web_search_options": "this server does not search the web",
}


@dataclass(frozen=True)
class GenerationRequest:
    """A chat or raw completion request, checked."""

    sampling: SamplingOptions
    options: ReplyOptions = field(default_factory=ReplyOptions)
    messages: list[ChatMessage] = field(
        default_factory=list
    )  # a chat's conversation, as the model will see it
    prompt: str | list[int] | None = None  # a raw completion's prompt: text or token ids
    echo: bool = False  # a completion's text starts with its prompt
    suffix: str | None = None  # a completion fills in between its prompt and this
    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False  # the response carries log-probabilities
    tools: ToolUse | None = None  # the request's tools, when a call may or must be the answer
    original_messages: list[ChatMessage] = field(default_factory=list)  # as the client sent them, for history
    libraries: tuple[str, ...] = ()  # answer from these libraries' passages (the extension field)
    sources: list[dict[str, object]] = field(default_factory=list)  # the passages used, for the response

    @property
    def stops(self) -> tuple[str, ...]:
        return self.options.stops


def chat_request(body: Mapping[str, object], model: ModelInfo) -> GenerationRequest:
    _check_fields(body, CHAT_FIELDS)
    messages = _messages(body.get("messages"))
    tools = tool_use(body, messages, model)
    grammar = structured_output(body.get("response_format"))
    triggers: tuple[str, ...] = ()
    if tools is not None and tools.forced:
        if grammar is not None:
            raise ApiError(
                400,
                "A request cannot both force a tool call ('tool_choice') and ask for a 'response_format': the "
                "reply would have to be both. Ask for one of them.",
                "invalid_value",
                "response_format",
            )
        grammar = tools.grammar
    elif tools is not None and grammar is None and tools.grammar is not None:
        grammar, triggers = tools.grammar, tools.grammar_triggers  # a call the model opens follows the tools
    logprobs = _flag(body, "logprobs")
    top = _whole_number(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    if top is not None and not logprobs:
        raise ApiError(400, "'top_logprobs' needs 'logprobs' set to true.", "invalid_value", "top_logprobs")
    request = _generation_request(
        body,
        model.context_size,
        messages=tools.messages if tools is not None else messages,
        original_messages=messages,
        tools=tools,
        grammar=grammar,
        grammar_triggers=triggers,
        template_tools=tools.template_tools if tools is not None else None,
        top_logprobs=(top or 0) if logprobs else None,
    )
    libraries = _libraries(body.get("libraries"))
    return dataclasses.replace(request, libraries=libraries) if libraries else request


def _libraries(value: object) -> tuple[str, ...]:
    """The extension field ``libraries``: the names of up to MAX_LIBRARIES libraries."""
    if value is None:
        return ()
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_LIBRARIES
        or not all(isinstance(name, str) and 0 < len(name) <= 200 for name in value)
    ):
        raise ApiError(
            400,
            f"'libraries' is a list of 1 to {MAX_LIBRARIES} library names, as `llamadesk library list` shows them.",
            "invalid_value",
            "libraries",
        )
    return tuple(dict.fromkeys(value))


def completion_request(body: Mapping[str, object], model: ModelInfo) -> GenerationRequest:
    """A raw completion: the prompt goes to the model as given, with no chat template."""
    _check_fields(body, COMPLETION_FIELDS)
    prompt = _prompt(body.get("prompt"))
    best_of = body.get("best_of")
    if best_of is not None and best_of != 1:
        raise ApiError(
            400,
            "Only one completion per request is served ('best_of' must be 1).",
            "invalid_value",
            "best_of",
        )
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise ApiError(400, "'suffix' must be text.", "invalid_type", "suffix")
    top = _whole_number(body, "logprobs", 0, MAX_COMPLETION_LOGPROBS)
    return _generation_request(
        body,
        model.context_size,
        prompt=prompt,
        echo=_flag(body, "echo"),
        suffix=suffix or None,
        grammar=structured_output(body.get("response_format")),
        top_logprobs=top,
    )


def _generation_request(
    body: Mapping[str, object],
    context_size: int,
    *,
    messages: list[ChatMessage] | None = None,
    original_messages: list[ChatMessage] | None = None,
    prompt: str | list[int] | None = None,
    echo: bool = False,
    suffix: str | None = None,
    tools: ToolUse | None = None,
    grammar: str | None = None,
    grammar_triggers: tuple[str, ...] = (),
    template_tools: list[dict[str, object]] | None = None,
    top_logprobs: int | None = None,
) -> GenerationRequest:
    n = body.get("n", 1)
    if n is not None and n != 1:
        raise ApiError(400, "Only one choice per request is served ('n' must be 1).", "invalid_value", "n")
    defaults = SamplingOptions()
    max_tokens, required = _max_tokens(body, context_size)
    sampling = SamplingOptions(
        temperature=_checked(body, "temperature", check_temperature, defaults.temperature),
        top_p=_checked(body, "top_p", check_top_p, defaults.top_p),
        top_k=int(_number(body, "top_k", 0, MAX_TOP_K, defaults.top_k, whole=True)),
        min_p=_number(body, "min_p", 0.0, 1.0, defaults.min_p),
        max_tokens=max_tokens,
        seed=_seed(body.get("seed")),
        # OpenAI's API has no repeat penalty, so its clients expect none unless they ask (llama.cpp's field).
        repeat_penalty=_number(body, "repeat_penalty", 0.0, MAX_REPEAT_PENALTY, 1.0),
        frequency_penalty=_penalty(body, "frequency_penalty"),
        presence_penalty=_penalty(body, "presence_penalty"),
    )
    options = ReplyOptions(
        stops=tuple(_stops(body.get("stop"))),
        grammar=grammar,
        grammar_triggers=grammar_triggers,
        logit_bias=_logit_bias(body.get("logit_bias")),
        top_logprobs=top_logprobs,
        cut_history=False,
        tools=template_tools,
        max_tokens_required=required,
    )
    stream = _flag(body, "stream")
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise ApiError(400, "'stream_options' must be an object.", "invalid_type", "stream_options")
    include_usage = bool(stream_options) and _flag(stream_options or {}, "include_usage")
    return GenerationRequest(
        sampling,
        options,
        messages=messages or [],
        prompt=prompt,
        echo=echo,
        suffix=suffix,
        stream=stream,
        include_usage=stream and include_usage,
        logprobs=top_logprobs is not None,
        tools=tools,
        original_messages=original_messages or [],
    )


def _check_fields(body: Mapping[str, object], known: frozenset[str]) -> None:
    """Every field is one this endpoint honours or a label: anything else is refused, never silently dropped."""
    for name in body:
        if name in known or name in LABEL_FIELDS:
            continue
        if name == "modalities" and body[name] in (["text"], None):
            continue
        reason = REFUSED_FIELDS.get(name)
        if reason is None:
            reason = "it is not a field of this endpoint (see the README's table of the fields served)"
        raise ApiError(400, f"'{name[:64]}' is refused: {reason}.", "unsupported_parameter", name[:64])


def _number(
    body: Mapping[str, object], name: str, low: float, high: float, default: float, *, whole: bool = False
) -> float:
    value = body.get(name)
    if value is None:
        return default
    number_kind = isinstance(value, int) if whole else isinstance(value, (int, float))
    if isinstance(value, bool) or not number_kind or not low <= value <= high:  # type: ignore[operator]
        kind = "whole number" if whole else "number"
        raise ApiError(
            400,
            f"'{name}' must be a {kind} from {low:g} to {high:g}, not {str(value)[:40]}.",
            "invalid_value",
            name,
        )
    return float(value)  # type: ignore[arg-type]


def _messages(value: object) -> list[ChatMessage]:
    if not isinstance(value, list) or not value:
        raise ApiError(400, "'messages' must be a non-empty list of messages.", "invalid_type", "messages")
    if len(value) > MAX_MESSAGES:
        raise ApiError(
            400,
            f"'messages' holds {len(value):,} messages; at most {MAX_MESSAGES:,} are taken in one request. Leave "
            "out older ones.",
            "invalid_value",
            "messages",
        )
    messages: list[ChatMessage] = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise ApiError(
                400, f"{where} must be an object with 'role' and 'content'.", "invalid_type", where
            )
        role = _ROLES.get(str(message.get("role")))
        if role is None or not isinstance(message.get("role"), str):
            raise ApiError(
                400,
                f"{where}.role must be one of system, developer, user, assistant or tool, not "
                f"{str(message.get('role'))[:40]!r}.",
                "invalid_value",
                f"{where}.role",
            )
        extra = message_tool_fields(message, role, where)
        content = message.get("content")
        # An assistant turn that only called tools has no content.
        text = "" if content is None and "tool_calls" in extra else _content(content, where)
        messages.append(ChatMessage(role=role, content=text, **extra))  # type: ignore[typeddict-item]
    return messages


def _content(value: object, where: str) -> str:
    """A message's text: a string, or a list of text parts (images and audio are not understood here)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if not (
                isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            ):
                raise ApiError(
                    400,
                    f"{where}.content may hold only text parts (this model reads no images or audio).",
                    "invalid_value",
                    f"{where}.content",
                )
            texts.append(part["text"])
        return "".join(texts)
    raise ApiError(400, f"{where}.content must be text.", "invalid_type", f"{where}.content")


def _prompt(value: object) -> str | list[int]:
    """A completion's prompt: text, or token ids; a list of one of those is taken as that one."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (str, list)):
        value = value[0]
    if isinstance(value, str):
        return value
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(token, int) and not isinstance(token, bool) and 0 <= token < 1 << 31 for token in value
        )
    ):
        return list(value)
    raise ApiError(
        400,
        "'prompt' must be text or a list of token ids (one prompt per request).",
        "invalid_type",
        "prompt",
    )


def _checked(
    body: Mapping[str, object], name: str, check: Callable[[object], float], default: float
) -> float:
    value = body.get(name)
    if value is None:
        return default
    try:
        return float(check(value))
    except OutOfRange as exc:
        raise ApiError(400, f"'{name}': {exc}", "invalid_value", name) from None


def _penalty(body: Mapping[str, object], name: str) -> float:
    value = body.get(name)
    if value is None:
        return 0.0
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not -MAX_PENALTY <= value <= MAX_PENALTY
    ):
        raise ApiError(
            400, f"'{name}' must be a number from -2 to 2, not {str(value)[:40]}.", "invalid_value", name
        )
    return float(value)


def _logit_bias(value: object) -> dict[int, float]:
    if value is None:
        return {}
    where = "logit_bias"
    if not isinstance(value, dict):
        raise ApiError(400, "'logit_bias' must be an object of token ids and biases.", "invalid_type", where)
    bias: dict[int, float] = {}
    for key, amount in value.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 10):
            raise ApiError(
                400,
                f"logit_bias keys must be token ids (whole numbers), not {key[:40]!r}.",
                "invalid_value",
                where,
            )
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or abs(amount) > MAX_LOGIT_BIAS:
            raise ApiError(
                400,
                f"logit_bias[{key}] must be a number from -100 to 100, not {str(amount)[:40]}.",
                "invalid_value",
                where,
            )
        bias[int(key)] = float(amount)
    return bias


def _max_tokens(body: Mapping[str, object], context_size: int) -> tuple[int, bool]:
    """The reply's token limit, and whether the client set it (then a prompt leaving less room is refused)."""
    # max_completion_tokens is the newer name for the same limit.
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = body.get(name)
    if value is None:
        return min(DEFAULT_MAX_TOKENS, max(1, context_size // 2)), False
    try:
        tokens = check_max_tokens(value)
    except OutOfRange as exc:
        raise ApiError(400, f"'{name}': {exc}", "invalid_value", name) from None
    if tokens >= context_size:
        raise ApiError(
            400,
            f"'{name}' must be below the loaded model's context of {context_size:,} tokens, not {tokens:,}; "
            "the prompt needs room too.",
            "context_length_exceeded",
            name,
        )
    return tokens, True


def _seed(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not _SEED_RANGE[0] <= value <= _SEED_RANGE[1]:
        raise ApiError(
            400, f"'seed' must be a 64-bit whole number, not {str(value)[:40]}.", "invalid_value", "seed"
        )
    return value & 0xFFFFFFFF  # llama.cpp's seed is 32 bits


def _stops(value: object) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or not all(isinstance(stop, str) and stop for stop in stops)
        or len(stops) > MAX_STOP_SEQUENCES
    ):
        raise ApiError(
            400,
            f"'stop' must be a non-empty string or a list of up to {MAX_STOP_SEQUENCES} non-empty strings.",
            "invalid_value",
            "stop",
        )
    return list(stops)


def _whole_number(body: Mapping[str, object], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(
            400,
            f"'{name}' must be a whole number from {low} to {high}, not {str(value)[:40]}.",
            "invalid_value",
            name,
        )
    return value


def _flag(body: Mapping[str, object], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be true or false, not {str(value)[:40]}.", "invalid_type", name)
    return value
