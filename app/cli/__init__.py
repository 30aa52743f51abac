"""The terminal: the ``llamadesk`` parser, and turning what a command raised into an exit code.

Each command group registers its own subcommands (chat, bench, history, models, summarize); ``--self-test`` and
no command at all are handled here. Exit codes: 0 done; 1 a user error (one sentence on stderr, never a
traceback) or a bug (its traceback goes to the log file, a sentence says where); 2 a usage error (argparse);
130 stopped with Ctrl+C.

Every command line builds the whole parser, ``--version`` and ``--help`` included, so the command group modules
import at the top only what their arguments need; the engine, the settings, the history, Qt and the rest are
imported by the handler that uses them (tests/cli/test_startup.py keeps it so).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from app import APP_NAME, __version__
from app.cli import bench, chat, history, library, models, serve, summarize
from app.cli.common import raise_on_interrupt
from app.core.errors import Cancelled, UserError

CommandHandler = Callable[[argparse.Namespace], int]

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamadesk",
        description=f"{APP_NAME}: run LLaMA-family language models on your own computer. "
        "Without a command, opens the window.",
    )
    parser.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    parser.add_argument("--model", metavar="PATH", help="open the window with this GGUF model loading")
    parser.add_argument(
        "--no-model",
        action="store_true",
        help="open the window without loading the last model (if it keeps failing to load)",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="load a model, generate a few tokens, open and close the window, and report what failed",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command_group in (chat, bench, history, library, models, summarize, serve):
        command_group.register(commands)
    return parser


def run_self_test(args: argparse.Namespace) -> int:
    from app.bench.selftest import self_test

    return self_test(args.model)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: CommandHandler | None = getattr(args, "handler", None)
    if handler is None and args.self_test:
        handler = run_self_test
    if handler is None:
        from app.ui.application import run_gui

        return run_gui(args)
    raise_on_interrupt()
    try:
        return handler(args)
    except UserError as exc:
        print(f"{APP_NAME}: {exc}", file=sys.stderr)
        return 1
    except Cancelled:
        return 130
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        report_bug(exc)
        return 1


def report_bug(exc: Exception) -> None:
    """Keep the traceback in the log file, where a bug report can quote it, and tell the person in a sentence."""
    # The window's log file, so one place holds every traceback, whichever front end hit it.
    from app.ui.application import configure_logging

    where = "."
    try:
        where = f"; the details are in {configure_logging()}."
    except OSError:  # no writable log folder: the traceback is the only record left, so stderr gets it
        log.addHandler(logging.StreamHandler(sys.stderr))
    log.error("A command failed with an unexpected error", exc_info=exc)
    print(
        f"{APP_NAME}: something went wrong inside {APP_NAME} ({type(exc).__name__}: {exc}). "
        f"This is a bug; please report it{where}",
        file=sys.stderr,
    )
