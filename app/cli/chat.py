"""``llamadesk chat``: a conversation in the terminal, interactive, one ``-p`` prompt, or stdin line by line.

The reply goes to stdout as it is generated; statistics and notes go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING

from app import APP_NAME
from app.cli.common import (
    add_model_arguments,
    loaded_model,
    real_number,
    resolve_model,
    stop_on_interrupt,
    whole_number,
)
from app.cli.history import open_store_for_saving
from app.cli.remote_options import add_remote_arguments, history_model
from app.core.errors import UserError
from app.core.limits import MAX_REPLY_TOKENS, MAX_TEMPERATURE, OutOfRange, check_max_tokens, check_temperature
from app.core.modes import Mode, ModePreset, preset_for
from app.core.units import counted

if TYPE_CHECKING:
    from collections.abc import Iterator

    from app.core.chat.session import ChatSession
    from app.core.history.store import HistoryStore
    from app.core.library.search import LibraryPassages
    from app.core.llm.engine import ReplyStats
    from app.core.llm.service import EngineClient


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chat = commands.add_parser("chat", help="chat in the terminal (reads stdin line by line when piped)")
    add_model_arguments(chat)
    add_remote_arguments(chat)
    chat.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.CHAT.value)
    chat.add_argument(
        "--temp",
        type=real_number(check_temperature),
        metavar="T",
        help=f"sampling temperature, 0..{MAX_TEMPERATURE:g} (0 = deterministic)",
    )
    chat.add_argument(
        "--max-tokens",
        type=whole_number(check_max_tokens),
        metavar="N",
        help=f"longest reply, in tokens (1..{MAX_REPLY_TOKENS})",
    )
    chat.add_argument("--system", metavar="TEXT", help="system prompt instead of the mode's")
    chat.add_argument(
        "-p", "--prompt", type=message_text, metavar="TEXT", help="send one message, print the reply and exit"
    )
    chat.add_argument(
        "--library",
        dest="libraries",
        action="append",
        default=[],
        metavar="NAME",
        help="answer from this library's passages (`llamadesk library add`); repeat for several",
    )
    chat.add_argument("--stats", action="store_true", help="print each reply's statistics to stderr")
    chat.add_argument("--no-save", action="store_true", help="do not keep this conversation in the history")
    chat.add_argument(
        "--continue",
        dest="continue_id",
        type=whole_number(check_conversation_id),
        metavar="ID",
        help="go on with a saved conversation (its ID as `llamadesk history list` shows it); its saved state "
        "spares evaluating its history again",
    )
    chat.set_defaults(handler=run_chat)


def message_text(text: str) -> str:
    """An argparse type: a message with something in it, else a usage error (exit 2) instead of a blank turn."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            'the message is empty; give the text to send, e.g. -p "What is the capital of France?".'
        )
    return text


def check_conversation_id(value: int) -> int:
    if value < 1:
        raise OutOfRange(f"a conversation's ID is a whole number from 1 up, not {value}.")
    return value


def chat_session(args: argparse.Namespace, store: HistoryStore | None) -> ChatSession:
    """A new conversation, or with ``--continue`` the saved one (raises UserError if it is not there)."""
    from app.core.chat.session import ChatSession

    if args.continue_id is None:
        return ChatSession(store, mode=args.mode)
    if store is None:
        raise UserError("--continue goes on with a saved conversation, so it cannot be used with --no-save.")
    conversation = store.get_conversation(args.continue_id)
    if conversation.deleted:
        raise UserError(
            f"Conversation {args.continue_id} is in the trash. Restore it in the window, or start a new one."
        )
    return ChatSession(store, args.continue_id, mode=args.mode)


def chat_preset(args: argparse.Namespace, model_id: str | None = None) -> ModePreset:
    """The mode's preset (the catalog model ``model_id``'s own, when it has one: the starter's), with the
    user's saved changes, then this command line's options on top."""
    from app.core import settings as settings_store

    saved = settings_store.load().settings.mode_overrides.get(args.mode, {})
    overrides = dict(saved)
    for key, value in (
        ("system_prompt", args.system),
        ("temperature", args.temp),
        ("max_tokens", args.max_tokens),
    ):
        if value is not None:
            overrides[key] = value
    return preset_for(Mode(args.mode), overrides, model_id=model_id)


def describe_stats(stats: ReplyStats) -> str:
    parts = [
        counted(stats.generated_tokens, "token"),
        f"{stats.tokens_per_second:.1f} tokens/s",
        f"first token after {stats.time_to_first_token:.2f} s",
        f"{stats.evaluated_tokens}/{stats.prompt_tokens} prompt tokens evaluated",
    ]
    if stats.dropped_messages:
        parts.append(counted(stats.dropped_turns, "oldest turn") + " left out to fit the context")
    if stats.finish_reason != "stop":
        parts.append({"length": "stopped at the length limit", "cancelled": "stopped"}[stats.finish_reason])
    return "[" + ", ".join(parts) + "]"


def run_chat(args: argparse.Namespace) -> int:
    from app.core.models.catalog import entry_for_file

    # The history opens before the model loads: a history this version cannot use stops us at once.
    store = None if args.no_save else open_store_for_saving()
    try:
        model = "" if args.endpoint else str(resolve_model(args).resolve())
        entry = entry_for_file(model) if model else None
        preset = chat_preset(args, entry.id if entry else None)
        with (
            used_libraries(args.libraries) as libraries,
            loaded_model(args, quiet=not sys.stdin.isatty() or args.prompt is not None) as (client, info),
        ):
            model = model or history_model(info)  # a server's model: its name and the server
            session = chat_session(args, store)
            session.documents = libraries
            return _converse(args, preset, session, client, model, info.context_size)
    finally:
        if store is not None:
            store.close()


@contextlib.contextmanager
def used_libraries(names: list[str]) -> Iterator[LibraryPassages | None]:
    """The libraries named with --library, opened on this thread for the conversation's questions (unknown
    names are a sentence before the model loads); None without any."""
    if not names:
        yield None
        return
    from app.core.library.database import LibraryDatabase
    from app.core.library.search import LibraryPassages
    from app.core.paths import app_paths

    db = LibraryDatabase(app_paths().ensure().library_db)
    passages = None
    try:
        passages = LibraryPassages(db, names)
        yield passages
    finally:
        if passages is not None:
            passages.close()
        db.close()


def _converse(
    args: argparse.Namespace,
    preset: ModePreset,
    session: ChatSession,
    client: EngineClient,
    model: str,
    context_size: int,
) -> int:
    interactive = args.prompt is None and sys.stdin.isatty()
    failures = 0

    def write(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    def turn(text: str) -> None:
        nonlocal failures
        try:
            session.add_user_message(text, model=model, preset=preset, context_size=context_size)
            reply = session.ask(client, preset)
            with stop_on_interrupt(reply.cancel):  # Ctrl+C ends the reply, keeping its text
                stats = session.record_stream(reply, write)
        except UserError as exc:
            # One bad message (too long for the context, say) must not end the conversation.
            session.forget_last_question()
            failures += 1
            print(f"{APP_NAME}: {exc}", file=sys.stderr)
            return
        sys.stdout.write("\n" if interactive else "\n\n")
        sys.stdout.flush()
        if session.sources:  # where the library excerpts came from, for the person to check
            places = dict.fromkeys(
                f"{source.path or source.document_name}, {source.label}" for source in session.sources
            )
            print("Sources: " + "; ".join(places), file=sys.stderr)
        if interactive or args.stats:
            print(describe_stats(stats), file=sys.stderr)

    if args.prompt is not None:
        turn(args.prompt)
        return 1 if failures else 0
    if not interactive:
        for line in sys.stdin:
            text = line.rstrip("\n")
            if text.strip():
                turn(text)
        return 1 if failures else 0

    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    print("Type a message and press Enter. Ctrl+C stops a reply; Ctrl+D or /exit quits.", file=sys.stderr)
    while True:
        try:
            text = input("> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        if text.strip() in ("/exit", "/quit"):
            return 0
        if text.strip():
            turn(text)
