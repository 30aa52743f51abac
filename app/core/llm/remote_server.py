"""Talking to an OpenAI-compatible server: the client, the models it lists, what it says about itself (its
context length, its tokenizer), and a sentence for every way a request to it can fail.

Servers differ beyond OpenAI's API: llama.cpp's ``llama-server`` reports its context at ``/props`` and counts
tokens at ``/tokenize`` (both at the server's root, beside ``/v1``); vLLM reports ``max_model_len`` in
``/v1/models`` and counts at ``/tokenize`` too; llama-cpp-python's server counts at ``/extras/tokenize``;
Ollama, LM Studio and another LlamaDesk say neither, so the person's setting and a safe estimate stand in.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from app.core.llm.remote_config import CONNECT_TIMEOUT, RemoteEngineError, RemoteServer, check_base_url
from app.core.units import counted

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 10.0  # seconds for the small requests made on connecting (models, props, a token count)


def open_client(server: RemoteServer) -> openai.OpenAI:
    """The OpenAI client for ``server``: 10 s to connect, ``read_timeout`` between bytes, no silent retries
    (a retry would hide for minutes that the server is down)."""
    return openai.OpenAI(
        base_url=check_base_url(server.url),
        # The client insists on a key; servers started without one ignore the header.
        api_key=server.api_key or "none",
        timeout=httpx2.Timeout(server.read_timeout, connect=CONNECT_TIMEOUT),
        max_retries=0,
    )


# -- what a server says, made safe to show ----------------------------------------------------------------------

# An escape sequence as a whole, so none of it is left behind: CSI (ESC [ or its C1 form, parameters, a final
# byte), a string command (OSC, DCS, SOS, PM, APC) up to its terminator, or any other escape (ESC, intermediate
# bytes, a final byte that does not open a CSI or a string command). What has begun but not ended does not match.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-OQ-WYZ\\`-~]"
)
_ESCAPE_START = re.compile(r"[\x1b\x9b\x90\x98\x9d\x9e\x9f]")
_CONTROLS_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1
_LINE_BREAKS = re.compile(r"[\t\n]")


def server_text(text: str, *, lines: bool = False) -> str:
    """``text`` from a server (a reply, an error message, a model's name) without what a terminal or a label
    would act on: escape sequences whole, then every other control character. With ``lines`` (reply text),
    newlines and tabs stay; without, each becomes a space."""
    text = _CONTROLS_BUT_LINES.sub("", _ESCAPE_SEQUENCE.sub("", text))
    return text if lines else _LINE_BREAKS.sub(" ", text)


def unfinished_escape(text: str) -> int | None:
    """Where an escape sequence begins in ``text`` that has not ended by its end, if one does: in a streamed
    reply, the rest of it may come with the next piece (``server_text`` on each piece alone would leave it
    half)."""
    position = 0
    while (start := _ESCAPE_START.search(text, position)) is not None:
        whole = _ESCAPE_SEQUENCE.match(text, start.start())
        if whole is None:
            return start.start()
        position = whole.end()
    return None


def list_models(server: RemoteServer) -> list[str]:
    """The model names the server lists at ``/v1/models``; raises RemoteEngineError with a sentence."""
    return [entry["id"] for entry in _model_entries(server)]


def _model_entries(server: RemoteServer) -> list[dict[str, Any]]:
    """The listing's entries that name a model, each ``id`` made safe to show (``server_text``)."""
    with open_client(server) as client:
        try:
            listing = client.with_options(timeout=probe_timeout()).models.list()
        except (openai.APIError, httpx2.HTTPError) as exc:
            raise failure_sentence(exc, server, listing=True) from None
    entries = []
    for entry in listing.data:
        fields = entry.model_dump()
        name = server_text(str(fields.get("id") or "")).strip()
        if name:
            entries.append({**fields, "id": name})
    if not entries:
        raise RemoteEngineError(
            f"The server at {server.url} lists no models. Load a model on it, then connect again."
        )
    return entries


@dataclass(frozen=True)
class ServerFacts:
    """What connecting learned: the model to ask for, the context length and where it came from, and the
    endpoint that counts tokens with the server's own tokenizer (None: none offered)."""

    model: str
    context_size: int
    context_source: str  # "server" or "setting"
    tokenize_path: str | None


def probe(server: RemoteServer) -> ServerFacts:
    """Ask the server which model to use, how long its context is and whether it counts tokens."""
    entries = _model_entries(server)
    names = [entry["id"] for entry in entries]
    model = server.model or names[0]
    if model not in names:
        raise RemoteEngineError(
            f"The server at {server.url} has no model named {model!r}; it offers {', '.join(names)}. "
            "Pick one of those."
        )
    with httpx2.Client(headers=auth_headers(server), timeout=probe_timeout()) as http:
        context = _context_from_props(http, server) or _context_from_listing(entries, model)
        tokenize_path = _tokenize_path(http, server, model)
    if context:
        return ServerFacts(model, context, "server", tokenize_path)
    return ServerFacts(model, server.context_size, "setting", tokenize_path)


def auth_headers(server: RemoteServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}"} if server.api_key else {}


def probe_timeout() -> httpx2.Timeout:
    """For the small requests: connecting, the model list, the context, a token count."""
    return httpx2.Timeout(PROBE_TIMEOUT, connect=CONNECT_TIMEOUT)


def _context_from_props(http: httpx2.Client, server: RemoteServer) -> int | None:
    """llama-server's context per slot, which is what one request can use."""
    data = _get_json(http, f"{server.root}/props")
    settings = data.get("default_generation_settings") if isinstance(data, dict) else None
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None


def _context_from_listing(entries: list[dict[str, Any]], model: str) -> int | None:
    """vLLM's ``max_model_len`` in its model listing."""
    for entry in entries:
        length = entry.get("max_model_len")
        if entry.get("id") == model and isinstance(length, int) and length > 0:
            return length
    return None


def _tokenize_path(http: httpx2.Client, server: RemoteServer, model: str) -> str | None:
    """The first counting endpoint that answers a probe with a list of tokens."""
    for path in ("/tokenize", "/extras/tokenize"):
        if count_with_server(http, server, path, model, "probe") is not None:
            return path
    return None


def count_with_server(
    http: httpx2.Client, server: RemoteServer, path: str, model: str, text: str
) -> int | None:
    """Tokens in ``text`` by the server's tokenizer, or None when it does not answer with them.

    One body serves every dialect: llama-server reads ``content``, vLLM ``prompt`` and ``model``,
    llama-cpp-python ``input``; each ignores the others' fields."""
    body = {"model": model, "content": text, "prompt": text, "input": text, "add_special": False}
    data = _post_json(http, f"{server.root}{path}", body)
    tokens = data.get("tokens") if isinstance(data, dict) else None
    return len(tokens) if isinstance(tokens, list) else None


def _get_json(http: httpx2.Client, url: str) -> object:
    try:
        response = http.get(url)
        return response.json() if response.status_code == 200 else None
    except (httpx2.HTTPError, ValueError):
        return None


def _post_json(http: httpx2.Client, url: str, body: dict[str, object]) -> object:
    try:
        response = http.post(url, json=body)
        return response.json() if response.status_code == 200 else None
    except (httpx2.HTTPError, ValueError):
        return None


# -- failures as sentences ------------------------------------------------------------------------------------


def failure_sentence(
    exc: BaseException, server: RemoteServer, *, model: str = "", listing: bool = False
) -> RemoteEngineError:
    """What happened and what to do, for an error from the OpenAI client or the HTTP layer under it."""
    where = f"The server at {server.url}"
    if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
        cause = exc.__cause__ if isinstance(exc, openai.APITimeoutError) else exc
        if isinstance(cause, httpx2.ConnectTimeout):
            return RemoteEngineError(
                f"{where} did not accept a connection within {CONNECT_TIMEOUT:.0f} seconds. Check that it is "
                "running and reachable from this computer, or switch the engine back to This computer."
            )
        return RemoteEngineError(
            f"{where} sent nothing for {counted(round(server.read_timeout), 'second')}, so the reply was ended. It may be "
            "overloaded; try again, or allow a longer wait in Settings → Engine."
        )
    if isinstance(exc, (openai.APIConnectionError, httpx2.HTTPError)):
        cause = exc.__cause__ if isinstance(exc, openai.APIConnectionError) else exc
        if isinstance(cause, httpx2.ConnectError):
            return RemoteEngineError(
                f"Cannot reach the server at {server.url}. Check that it is running and that the address "
                "is right, or switch the engine back to This computer."
            )
        return RemoteEngineError(
            f"The connection to the server at {server.url} broke off. What arrived of the reply is kept; "
            "try again."
        )
    if isinstance(exc, openai.APIStatusError):
        return status_sentence(exc.status_code, exc.body, server, model=model, listing=listing)
    if isinstance(exc, openai.APIError):  # an error event inside the stream
        return stream_error_sentence(exc.message, server)
    return RemoteEngineError(f"{where} could not be used ({_short(str(exc))}). Try again.")


def stream_error_sentence(message: str, server: RemoteServer) -> RemoteEngineError:
    """For an error the server reported inside a streamed reply, in its words (made safe to show)."""
    return RemoteEngineError(
        f"The server at {server.url} reported an error while answering ({_short(message)}). What arrived is "
        "kept; try again, and if it keeps failing, check the server's log."
    )


def status_sentence(
    status: int, body: object, server: RemoteServer, *, model: str = "", listing: bool = False
) -> RemoteEngineError:
    """For a refusal with HTTP ``status``; ``body`` is the error's decoded JSON (anything else is ignored)."""
    where = f"The server at {server.url}"
    said = _server_message(body)
    if status in (401, 403):
        key = "the API key given" if server.api_key else "a request without an API key"
        return RemoteEngineError(
            f"{where} refused {key} ({status}). Enter the server's key in Settings → Engine (or with "
            "--api-key), and check it there."
        )
    if status == 404:
        if listing:
            return RemoteEngineError(
                f"{where} has no OpenAI API at this address (404). Check the URL: it usually ends in /v1, "
                "e.g. http://gpu-box:8000/v1."
            )
        return RemoteEngineError(
            f"{where} does not know the model {model!r} (404{': ' + said if said else ''}). Pick one of the "
            "models it lists in Settings → Engine (or with --remote-model)."
        )
    if status == 429:
        return RemoteEngineError(
            f"{where} is busy and refused the request (429: too many requests). Wait a moment, then try again."
        )
    if status >= 500:
        return RemoteEngineError(
            f"{where} failed while answering ({status}{': ' + said if said else ''}). Try again; if it keeps "
            "failing, check the server's log."
        )
    return RemoteEngineError(
        f"{where} refused the request ({status}{': ' + said if said else ''}). Check the engine settings, "
        "then try again."
    )


def _server_message(body: object) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
        if isinstance(message, str) and message:
            return _short(message)
    return ""


def _short(text: str, limit: int = 200) -> str:
    """A server's words for a sentence: safe to show (``server_text``), on one line, at most ``limit`` long."""
    text = " ".join(server_text(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
