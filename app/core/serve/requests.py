"""A request body turned into what the engine needs, every field checked (wrong type or range: a 400 sentence).

Fields OpenAI's API defines but this server does not use (``model``, ``user``, ``frequency_penalty``...) are
accepted and ignored, as llama.cpp's and vLLM's servers do; ones that would change the answer's shape and cannot be
honoured (``n`` above 1, tools, images) are refused rather than silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from app.core.limits import OutOfRange, check_max_tokens, check_temperature, check_top_p
from app.core.llm.context import ChatMessage
from app.core.modes import SamplingOptions
from app.core.serve.errors import ApiError

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_STOP_SEQUENCES = 4  # OpenAI's own limit
DEFAULT_MAX_TOKENS = 1024
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_SEED_RANGE = (-(1 << 63), (1 << 63) - 1)  # OpenAI's seed is a 64-bit integer


@dataclass(frozen=True)
class GenerationRequest:
    """A chat or completion request, checked."""

    messages: list[ChatMessage]
    sampling: SamplingOptions
    stops: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False


def parse_body(raw: bytes) -> dict[str, object]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"The request body is not valid JSON ({exc}).", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", "invalid_json")
    return body


def chat_request(body: Mapping[str, object], context_size: int) -> GenerationRequest:
    return _generation_request(body, _messages(body.get("messages")), context_size)


def completion_request(body: Mapping[str, object], context_size: int) -> GenerationRequest:
    """A completion's prompt goes to the model as one user turn: the engine serves chat only."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "'prompt' must be a string (one prompt per request).", "invalid_type", "prompt")
    return _generation_request(body, [ChatMessage(role="user", content=prompt)], context_size)


def _generation_request(
    body: Mapping[str, object], messages: list[ChatMessage], context_size: int
) -> GenerationRequest:
    n = body.get("n", 1)
    if n is not None and n != 1:
        raise ApiError(400, "Only one choice per request is served ('n' must be 1).", "invalid_value", "n")
    defaults = SamplingOptions()
    sampling = SamplingOptions(
        temperature=_checked(body, "temperature", check_temperature, defaults.temperature),
        top_p=_checked(body, "top_p", check_top_p, defaults.top_p),
        max_tokens=_max_tokens(body, context_size),
        seed=_seed(body.get("seed")),
    )
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ApiError(400, "'stream_options' must be an object.", "invalid_type", "stream_options")
    include_usage = bool(options) and _flag(options or {}, "include_usage")
    return GenerationRequest(messages, sampling, _stops(body.get("stop")), stream, stream and include_usage)


def _messages(value: object) -> list[ChatMessage]:
    if not isinstance(value, list) or not value:
        raise ApiError(400, "'messages' must be a non-empty list of messages.", "invalid_type", "messages")
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
                f"{where}.role must be one of system, developer, user or assistant, not {message.get('role')!r}.",
                "invalid_value",
                f"{where}.role",
            )
        messages.append(ChatMessage(role=role, content=_content(message.get("content"), where)))
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
                    400, f"{where}.content may hold only text parts.", "invalid_value", f"{where}.content"
                )
            texts.append(part["text"])
        return "".join(texts)
    raise ApiError(400, f"{where}.content must be text.", "invalid_type", f"{where}.content")


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


def _max_tokens(body: Mapping[str, object], context_size: int) -> int:
    # max_completion_tokens is the newer name for the same limit.
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = body.get(name)
    if value is None:
        return min(DEFAULT_MAX_TOKENS, max(1, context_size // 2))
    try:
        tokens = check_max_tokens(value)
    except OutOfRange as exc:
        raise ApiError(400, f"'{name}': {exc}", "invalid_value", name) from None
    if tokens >= context_size:
        raise ApiError(
            400,
            f"'{name}' must be below the loaded model's context of {context_size:,} tokens, not {tokens:,}; "
            "the prompt needs room too.",
            "invalid_value",
            name,
        )
    return tokens


def _seed(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not _SEED_RANGE[0] <= value <= _SEED_RANGE[1]:
        raise ApiError(400, f"'seed' must be a 64-bit whole number, not {value!r}.", "invalid_value", "seed")
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


def _flag(body: Mapping[str, object], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be true or false, not {value!r}.", "invalid_type", name)
    return value
