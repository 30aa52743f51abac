"""``--endpoint URL [--api-key KEY] [--remote-model NAME] [--remote-wait SECONDS]`` on chat and summarize: a model
on another machine.

The engine service runs a ``RemoteEngine`` in place of the local one; everything else in those commands (modes,
history, documents, summaries) goes through it unchanged. ``--ctx`` gives the context length when the server
does not say its own.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

# Light (no HTTP client, no engine): the parser checks --endpoint with it on every command line.
from app.core.llm.remote_config import (
    DEFAULT_CONTEXT,
    WAIT_SECONDS_RANGE,
    RemoteEngineError,
    RemoteServer,
    check_base_url,
    check_wait_seconds,
)

if TYPE_CHECKING:
    from app.core.llm.engine import ModelInfo
    from app.core.llm.service import EngineClient


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        type=_base_url,
        metavar="URL",
        help="use a model on a server with OpenAI's API instead of this computer's, e.g. http://gpu-box:8000/v1 "
        "(llama-server, vLLM, Ollama, LM Studio, another LlamaDesk)",
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help="with --endpoint: the server's API key (default: the one saved in Settings for that URL)",
    )
    parser.add_argument(
        "--remote-model",
        metavar="NAME",
        help="with --endpoint: the model to ask for (default: the first one the server lists)",
    )
    parser.add_argument(
        "--remote-wait",
        type=_wait_seconds,
        metavar="SECONDS",
        help=f"with --endpoint: the longest wait for the first token and between tokens, "
        f"{WAIT_SECONDS_RANGE[0]}..{WAIT_SECONDS_RANGE[1]}; the server's keep-alives do not count "
        "(default: from settings)",
    )


def _base_url(text: str) -> str:
    try:
        return check_base_url(text)
    except RemoteEngineError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _wait_seconds(text: str) -> int:
    try:
        return check_wait_seconds(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds, not {text!r}.") from None
    except RemoteEngineError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def remote_server(args: argparse.Namespace) -> RemoteServer:
    """The server the command line names. The key saved in Settings goes only to the URL it was saved for."""
    from app.core import settings as settings_store

    settings = settings_store.load().settings
    url = args.endpoint.rstrip("/")
    saved_here = settings.remote_url.rstrip("/") == url
    key = args.api_key if args.api_key is not None else (settings.remote_api_key if saved_here else "")
    context = args.ctx or (settings.remote_context_size if saved_here else 0) or DEFAULT_CONTEXT
    return RemoteServer(
        base_url=url,
        api_key=key,
        model=args.remote_model or "",
        context_size=context,
        read_timeout=settings.remote_read_timeout,
        wait_seconds=getattr(args, "remote_wait", None) or settings.remote_wait_seconds,
    )


@contextlib.contextmanager
def connected_server(
    args: argparse.Namespace, *, quiet: bool = False
) -> Iterator[tuple[EngineClient, ModelInfo]]:
    """The engine service over the server ``--endpoint`` names, connected, and this terminal's client of it;
    unless ``quiet``, one line on stderr says which model answers."""
    from app.core.llm.remote import RemoteEngine
    from app.core.llm.service import EngineService

    engine = RemoteEngine(remote_server(args))
    info = engine.connect()  # before the service starts: nothing else uses the engine yet
    service = EngineService(engine)
    try:
        if not quiet:
            where = "as the server says" if info.native_context else "as set; the server does not say"
            print(
                f"Connected to {info.name} at {engine.server.url} (context {info.context_size} tokens, {where}).",
                file=sys.stderr,
            )
        yield service.client("cli"), info
    finally:
        service.shutdown()


def history_model(info: ModelInfo) -> str:
    """What the history records as the model that answered: a server's model with its server."""
    from app.core.llm.remote_info import RemoteModelInfo

    return info.identity if isinstance(info, RemoteModelInfo) else str(info.path)
