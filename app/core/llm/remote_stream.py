"""A streamed reply from an OpenAI-compatible server, read at the HTTP level within bounds.

The OpenAI client's own stream keeps a line until it ends, however long: a server that sends one line that never
ends grows the client by gigabytes in seconds. Here every line, every event and the whole response have a size
limit; past one, the reply ends with a sentence (``RemoteEngineError``) and memory stays bounded. Server-sent
events are decoded as the specification says (``data:`` lines joined, comments and other fields skipped), and each
event's JSON is read for what a reply needs, leniently: servers differ in the fields they leave out.

Every chunk says whether it was progress (text, a tool call, reasoning, or the reply's end): the caller's wait for
the next token restarts only on those, never on a keep-alive.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx2

from app.core.llm.remote_config import RemoteEngineError, RemoteServer
from app.core.llm.remote_server import (
    server_text,
    status_sentence,
    stream_error_sentence,
    unfinished_escape,
)
from app.core.units import human_bytes

log = logging.getLogger(__name__)

# One line (and one event) of the stream. A real chunk carries a token or a few in ~300 bytes; the largest real
# ones carry a whole reply at once (servers that do not stream token by token): the longest reply allowed,
# JSON-escaped (a \uXXXX is 6 bytes a character), stays under 4 MB.
MAX_LINE_BYTES = 4_000_000
# The whole response: the longest reply allowed (limits.MAX_REPLY_TOKENS, 131,072) at about 2 KB of framing a token (a chunk with
# log-probabilities and usage each time), far above any real reply. Only counted, never held: it ends a server
# that sends without end.
MAX_RESPONSE_BYTES = 256_000_000
ERROR_BODY_BYTES = 64 * 1024  # of a refusal's body, read for the server's message; the rest is not read
# Reply text held back while an escape sequence begun in one piece may end in the next; past this, it is let go
# (made safe all the same): real sequences are a few dozen characters.
HELD_ESCAPE_CHARS = 4096

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class StreamChunk:
    """What one event of the stream brought: reply text (made safe to show), whether it was progress, the
    finish reason if the reply ended, and the token counts if the server sent them."""

    text: str = ""
    progressed: bool = False
    finish: str | None = None
    usage: tuple[int, int] | None = None  # prompt tokens, generated tokens


class StreamTooLarge(RemoteEngineError):
    """A line, an event or the whole response passed its limit."""


class BoundedLines:
    """Splits bytes into lines (CR, LF or CRLF ends one, as server-sent events allow), never holding more than
    ``limit`` bytes of a line that has not ended: past that, ``feed`` raises ``StreamTooLarge``."""

    def __init__(self, server: RemoteServer, limit: int = MAX_LINE_BYTES) -> None:
        self._server = server
        self._limit = limit
        self._pending = bytearray()

    def feed(self, data: bytes) -> Iterator[bytes]:
        # What was pending holds no line end but perhaps a CR last: the search starts there, not over again.
        search_from = max(len(self._pending) - 1, 0)
        self._pending += data
        start = 0
        for match in _LINE_END.finditer(self._pending, search_from):
            if match.group() == b"\r" and match.end() == len(self._pending):
                break  # a CR last: the LF of a CRLF may come with the next piece
            yield bytes(self._pending[start : match.start()])
            start = match.end()
        del self._pending[:start]
        if len(self._pending) > self._limit:
            self._pending.clear()
            raise too_large(self._server, f"a line longer than {human_bytes(self._limit)}")

    def finish(self) -> Iterator[bytes]:
        """The last line, when the stream ended without ending it."""
        if self._pending:
            yield bytes(self._pending.rstrip(b"\r"))
            self._pending.clear()


class ReplyText:
    """A reply's text piece by piece, made safe to show (``server_text``), with an escape sequence cut between
    two pieces held back until its end arrives, so that it goes whole."""

    def __init__(self) -> None:
        self._held = ""

    def clean(self, piece: str) -> str:
        text, self._held = self._held + piece, ""
        cut = unfinished_escape(text)
        if cut is not None and len(text) - cut <= HELD_ESCAPE_CHARS:
            text, self._held = text[:cut], text[cut:]
        return server_text(text, lines=True)

    def finish(self) -> str:
        """What is still held, at the reply's end."""
        held, self._held = self._held, ""
        return server_text(held, lines=True)


def too_large(server: RemoteServer, what: str) -> StreamTooLarge:
    return StreamTooLarge(
        f"The server at {server.url} sent {what}, so the reply was ended; it may not be an OpenAI-compatible "
        "server, or it went wrong. What arrived is kept; check the address and the server's log."
    )


def open_reply_stream(
    http: httpx2.Client, server: RemoteServer, body: dict[str, object], model: str
) -> httpx2.Response:
    """POST the chat request and return the streaming response, its headers read; a refusal raises
    RemoteEngineError with the server's words (at most ``ERROR_BODY_BYTES`` of them read)."""
    request = http.build_request(
        "POST",
        f"{server.url}/chat/completions",
        json=body,
        # Identity: a compressed body could inflate far beyond the bytes counted against the limits.
        headers={"Accept": "text/event-stream", "Accept-Encoding": "identity"},
        timeout=httpx2.Timeout(server.read_timeout, connect=http.timeout.connect),
    )
    response = http.send(request, stream=True)
    if response.status_code == 200:
        return response
    try:
        said = _read_at_most(response, ERROR_BODY_BYTES)
    finally:
        response.close()
    try:
        decoded: object = json.loads(said.decode("utf-8", errors="replace"))
    except ValueError:
        decoded = None
    raise status_sentence(response.status_code, decoded, server, model=model)


def _read_at_most(response: httpx2.Response, limit: int) -> bytes:
    read = bytearray()
    for piece in response.iter_bytes():
        read += piece[: limit - len(read)]
        if len(read) >= limit:
            break
    return bytes(read)


def reply_chunks(
    response: httpx2.Response, server: RemoteServer, abandoned: Callable[[], bool]
) -> Iterator[StreamChunk]:
    """The chunks of a streamed reply until ``[DONE]``, the end of the body or ``abandoned()`` (looked at with
    every piece that arrives, keep-alives included). Raises ``StreamTooLarge`` past a limit, RemoteEngineError
    for an error the server reports in the stream, and httpx2's errors for the connection."""
    text = ReplyText()
    for event in sse_events(response, server, abandoned):
        if event.strip() == b"[DONE]":
            break
        chunk = parse_chunk(event, server)
        if chunk is not None:
            yield dataclasses.replace(chunk, text=text.clean(chunk.text))
    rest = text.finish()
    if rest:
        yield StreamChunk(text=rest, progressed=True)


def sse_events(
    response: httpx2.Response, server: RemoteServer, abandoned: Callable[[], bool]
) -> Iterator[bytes]:
    """Each server-sent event's data (its ``data:`` lines joined), within the limits; comments (keep-alives),
    blank lines alone and the fields a reply does not use are skipped."""
    lines = BoundedLines(server)
    data: list[bytes] = []
    data_bytes = 0
    received = 0
    for piece in response.iter_bytes():
        if abandoned():
            return
        received += len(piece)
        if received > MAX_RESPONSE_BYTES:
            raise too_large(server, f"more than {human_bytes(MAX_RESPONSE_BYTES)} for one reply")
        for line in lines.feed(piece):
            if line:
                field, _, value = line.partition(b":")
                if field == b"data":
                    data.append(value[1:] if value.startswith(b" ") else value)
                    data_bytes += len(line)
                    if data_bytes > MAX_LINE_BYTES:
                        raise too_large(server, f"an event longer than {human_bytes(MAX_LINE_BYTES)}")
            elif data:
                yield b"\n".join(data)
                data, data_bytes = [], 0


def parse_chunk(event: bytes, server: RemoteServer) -> StreamChunk | None:
    """One event's chunk, its text as the server sent it (``ReplyText`` makes it safe); None for one that is
    not a chunk (skipped: servers add events of their own)."""
    try:
        decoded = json.loads(event.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        log.info("the server at %s sent an event that is not JSON; skipped", server.url)
        return None
    if not isinstance(decoded, dict):
        return None
    error = decoded.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else error
        raise stream_error_sentence(message if isinstance(message, str) and message else "no details", server)
    text: list[str] = []
    progressed = False
    finish: str | None = None
    choices = decoded.get("choices")
    for choice in choices if isinstance(choices, list) else []:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str) and content:
                text.append(content)
            # A tool call or a reasoning model's thinking is the server at work, though not shown here.
            progressed = progressed or any(
                delta.get(name) for name in ("content", "tool_calls", "reasoning_content", "reasoning")
            )
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            finish = reason
            progressed = True
    return StreamChunk(
        text="".join(text),
        progressed=progressed,
        finish=finish,
        usage=_usage(decoded.get("usage")),
    )


def _usage(usage: object) -> tuple[int, int] | None:
    if not isinstance(usage, dict):
        return None
    prompt, generated = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(generated, int) and min(prompt, generated) >= 0:
        return prompt, generated
    return None
