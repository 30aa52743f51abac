"""``llamadesk serve``: the model, served to other programs over OpenAI's API at http://HOST:PORT/v1.

Requests run one at a time on the engine thread, in arrival order; they are not written to the history.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys

from app.cli.common import add_model_arguments, loaded_model


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
    serve.set_defaults(handler=run_serve, parser=serve)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, not {text!r}.")
    return int(text)


def run_serve(args: argparse.Namespace) -> int:
    # Imported here: the server's libraries need not load for every other command.
    from app.core.serve.guard import is_loopback

    parser: argparse.ArgumentParser = args.parser
    if not is_loopback(args.host) and not args.api_key:
        parser.error(
            f"listening on {args.host} lets other computers reach the model: set a key with --api-key KEY "
            "(or keep the default --host 127.0.0.1)."
        )
    # Listening before the load: a taken port fails in a second, not after the model has loaded.
    listener = _listen(args.host, args.port)
    import uvicorn

    from app.core.serve.app import create_app

    with listener, loaded_model(args) as (client, info):
        port = listener.getsockname()[1]
        shown = f"[{args.host.strip('[]')}]" if ":" in args.host else args.host
        print(f"Serving {info.display_name} at http://{shown}:{port}/v1 (Ctrl+C to stop).", flush=True)
        app = create_app(client, bound_host=args.host, api_key=args.api_key)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,  # a streaming reply is cancelled rather than waited for
            server_header=False,
        )
        # Ctrl+C and SIGTERM end it after a clean shutdown; uvicorn then raises the captured Ctrl+C again.
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(config).run(sockets=[listener])
    print("Stopped serving.", file=sys.stderr)
    return 0


def _listen(host: str, port: int) -> socket.socket:
    from app.core.errors import UserError

    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family, backlog=64)
    except socket.gaierror:
        raise UserError(f"{host!r} is not an address of this computer; try --host 127.0.0.1.") from None
    except OSError as exc:
        raise UserError(
            f"Cannot listen on {host}:{port} ({exc.strerror}). Another program may be using the port; "
            "choose another with --port N, or --port 0 for any free one."
        ) from None
