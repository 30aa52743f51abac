"""A request's body read as a JSON object, refusing with a 400/413 sentence what is not one: a body not declared as
JSON (a web page's "simple" request, which a browser sends to any server without asking it first, can only be
text/plain or a form), a body over the size cap, and JSON that would make the parser fail badly (nesting deep
enough to exhaust the stack, a number too long to convert, NaN and the infinities, which JSON does not have)."""

from __future__ import annotations

import json
import math

from starlette.requests import Request

from app.core.serve.errors import ApiError

MAX_BODY_BYTES = 4 * 1024 * 1024
# A whole number's digits: the longest field (a 64-bit seed) has 20; Python refuses past 4,300, slowly.
MAX_NUMBER_DIGITS = 100
JSON_CONTENT_TYPE = "application/json"


class _NotPlainJson(ValueError):
    """A value the standard allows the parser to accept but no client of OpenAI's API sends."""


async def read_json_body(request: Request) -> dict[str, object]:
    """The body as a JSON object, checked before a byte of it is read: its declared content type, then its size
    (declared or counted as it arrives, for a chunked body)."""
    _check_content_type(request.headers.get("content-type"))
    too_large = ApiError(
        413,
        f"The request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB; send a shorter request.",
        "body_too_large",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks = bytearray()
    async for chunk in request.stream():  # a chunked body declares no length: count it as it comes
        chunks += chunk
        if len(chunks) > MAX_BODY_BYTES:
            raise too_large
    return parse_json_object(bytes(chunks))


def is_json_content_type(header: str | None) -> bool:
    """``application/json`` or a JSON-based type (``application/problem+json``), with any parameters."""
    media_type = (header or "").split(";", 1)[0].strip().lower()
    return media_type == JSON_CONTENT_TYPE or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _check_content_type(header: str | None) -> None:
    if is_json_content_type(header):
        return
    received = f"'{header.strip()}'" if header and header.strip() else "no content type"
    raise ApiError(
        400,
        f"The request body was sent as {received}; send it as JSON with the header "
        f"'Content-Type: {JSON_CONTENT_TYPE}'.",
        "invalid_content_type",
    )


def parse_json_object(raw: bytes) -> dict[str, object]:
    """``raw`` as a JSON object, or a 400 sentence saying what is wrong with it."""
    try:
        body = json.loads(
            raw, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_whole_number
        )
    except _NotPlainJson as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}", "invalid_json") from None
    except RecursionError:
        raise ApiError(
            400,
            "The request body is not valid JSON: its arrays and objects are nested too deeply.",
            "invalid_json",
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"The request body is not valid JSON ({exc}).", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", "invalid_json")
    return body


def _refuse_constant(name: str) -> object:
    raise _NotPlainJson(f"{name} is not a number JSON allows; send a finite number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotPlainJson(f"the number {text[:40]} is too large; send one a 64-bit float can hold.")
    return value


def _whole_number(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_NUMBER_DIGITS:
        raise _NotPlainJson(
            f"a number has {digits:,} digits; send numbers of at most {MAX_NUMBER_DIGITS} digits."
        )
    return int(text)
