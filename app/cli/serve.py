"""``llamadesk serve``: the model, served to other programs over OpenAI's API at http://HOST:PORT/v1.

Requests run one at a time on the engine thread, in arrival order (with ``--parallel N``, up to N at once, decoded
together in one batch: app.core.llm.batched); they are not written to the history unless
``--save-history`` asks for it (each chat request then becomes a conversation, marked as served through the API).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli.common import add_model_arguments, loaded_model, whole_number
from app.core.limits import OutOfRange


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve", help="let other programs use the model over an OpenAI-compatible API (http://HOST:PORT/v1)"
    )
    add_model_arguments(serve)
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this computer only; any other needs --api-key)",
    )
    serve.add_argument("--port", type=_port, default=8080, help="port, 0 for any free one (default 8080)")
    serve.add_argument(
        "--api-key", metavar="KEY", help="require 'Authorization: Bearer KEY' on every request but /health"
    )
    serve.add_argument(
        "--allow-origin",
        metavar="ORIGIN",
        action="append",
        type=_origin,
        default=[],
        help="let the web app at ORIGIN (e.g. https://chat.example.com) call the server from a browser; "
        "repeat for several (default: no web page may)",
    )
    serve.add_argument(
        "--embedding-model",
        type=Path,
        metavar="PATH",
        help="a GGUF embedding model to serve /v1/embeddings with (its own context, beside the chat model)",
    )
    serve.add_argument(
        "--parallel",
        type=whole_number(_check_parallel),
        default=1,
        metavar="N",
        help="answer up to N requests at once, decoded together in one batch, each with N-th of the context "
        "(default 1: one at a time)",
    )
    serve.add_argument(
        "--save-history",
        action="store_true",
        help="keep each chat request and its reply in the history, as a conversation marked as served",
    )
    serve.add_argument(
        "--draft",
        choices=("lookup", "off"),
        help="prompt-lookup drafting for every request: 'lookup' drafts tokens from the prompt (faster where "
        "replies copy it), 'off' never (default: the engine's measured choice, which drafts)",
    )
    serve.set_defaults(handler=run_serve, parser=serve)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, not {text!r}.")
    return int(text)


def _check_parallel(value: int) -> int:
    # Imported here, when the option is given: the engine's modules need not load for every other command.
    from app.core.llm.load_options import check_parallel

    return check_parallel(value, automatic=False)


def _origin(text: str) -> str:
    # Imported here, when the option is given: the settings need not load for every other command.
    from app.core.settings import check_web_origin

    try:
        return check_web_origin(text)
    except OutOfRange as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_serve(args: argparse.Namespace) -> int:
    # Imported here: the server's libraries need not load for every other command.
    from app.core.serve.guard import is_loopback

    parser: argparse.ArgumentParser = args.parser
    if not is_loopback(args.host) and not args.api_key:
        parser.error(
            f"listening on {args.host} lets other computers reach the model: set a key with --api-key KEY "
            "(or keep the default --host 127.0.0.1)."
        )
    from app.core.serve.app import ServeState
    from app.core.serve.history import ServedHistory
    from app.core.serve.runner import ApiServer, listen

    # Listening before the load: a taken port fails in a second, not after the model has loaded.
    listener = listen(args.host, args.port)
    history = (
        ServedHistory(failed=lambda sentence: print(sentence, file=sys.stderr)) if args.save_history else None
    )
    from app.core.paths import app_paths
    from app.core.serve.library_context import LibraryWorker

    embeddings = None
    libraries = LibraryWorker(app_paths().ensure().library_db)  # the libraries chat requests may name
    try:
        if args.embedding_model is not None:
            from app.core.serve.embeddings import EmbeddingWorker

            embeddings = EmbeddingWorker(args.embedding_model.expanduser())
        with listener, loaded_model(args) as (client, info):
            state = ServeState(client, on_served=history.record if history else None)
            state.draft = args.draft
            server = ApiServer(
                client,
                listener,
                host=args.host,
                api_key=args.api_key,
                allowed_origins=args.allow_origin,
                state=state,
                embeddings=embeddings,
                libraries=libraries,
            )
            kept = " Chat requests are kept in the history." if history else ""
            web = f" Web apps allowed: {', '.join(args.allow_origin)}." if args.allow_origin else ""
            if embeddings is not None:
                web += f" Embeddings by {embeddings.name} ({embeddings.dimensions} dimensions)."
            print(
                f"Serving {info.display_name} at {server.base_url} (Ctrl+C to stop).{kept}{web}", flush=True
            )
            server.run()
    finally:
        if history is not None:
            history.close()
        if embeddings is not None:
            embeddings.close()
        libraries.close()
    print("Stopped serving.", file=sys.stderr)
    return 0
