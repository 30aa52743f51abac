"""Where a remote engine is and how long to wait for it: the settings of one OpenAI-compatible server, checked.

Kept free of HTTP libraries (the OpenAI client takes a second or more to import) and of the engine, so the
settings can check these values at startup; ``app.core.llm.remote`` does the talking.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from app.core.errors import UserError

CONNECT_TIMEOUT = 10.0  # seconds to open a connection: a server that takes longer is down or unreachable
DEFAULT_READ_TIMEOUT = 300  # seconds without a byte before a reply is given up
READ_TIMEOUT_RANGE = (5, 3600)
# The longest wait for a reply's first token, then between tokens. Unlike the read timeout, a server's keep-alives
# (SSE comments, blank lines) do not restart it: only text, a tool call or the reply's end count. Two minutes
# covers a long prompt on a busy GPU server; a slower one (a CPU server, a huge prompt) is what the setting is for.
DEFAULT_WAIT_SECONDS = 120
WAIT_SECONDS_RANGE = (1, 3600)
DEFAULT_CONTEXT = 4096  # used when the server does not say its own


class RemoteEngineError(UserError):
    """A server could not be used or failed while answering; the sentence says what to do."""


@dataclass(frozen=True)
class RemoteServer:
    """One server. ``model`` empty: the first one the server lists."""

    base_url: str  # the OpenAI base URL, e.g. http://gpu-box:8000/v1
    api_key: str = ""
    model: str = ""
    context_size: int = DEFAULT_CONTEXT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    wait_seconds: float = (
        DEFAULT_WAIT_SECONDS  # for the first token, then between tokens; keep-alives do not count
    )

    def __repr__(self) -> str:  # the key must never reach a log through a repr
        return f"RemoteServer(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def url(self) -> str:
        return self.base_url.strip().rstrip("/")

    @property
    def root(self) -> str:
        """The server's own root, where llama-server and vLLM put ``/props`` and ``/tokenize``."""
        url = self.url
        return url[: -len("/v1")] if url.endswith("/v1") else url


def check_base_url(text: str) -> str:
    """``text`` if it is an http(s) URL with a host; else a sentence saying what one looks like."""
    url = text.strip()
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError:
        valid = False
    if not valid:
        raise RemoteEngineError(
            f"{text!r} is not a server address. Give the server's OpenAI base URL, such as "
            "http://gpu-box:8000/v1."
        )
    return url


def check_read_timeout(seconds: int) -> int:
    low, high = READ_TIMEOUT_RANGE
    if not low <= seconds <= high:
        raise RemoteEngineError(f"The wait for a server must be from {low} to {high} seconds, not {seconds}.")
    return seconds


def check_wait_seconds(seconds: int) -> int:
    low, high = WAIT_SECONDS_RANGE
    if not low <= seconds <= high:
        raise RemoteEngineError(
            f"The longest wait for a server's next token must be from {low} to {high} seconds, not {seconds}."
        )
    return seconds
