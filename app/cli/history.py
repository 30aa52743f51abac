"""``llamadesk history``: list, show, search, export and import the saved conversations; and the saving of
``llamadesk chat``'s conversations.

Everything a command prints as its result goes to stdout (so it can be piped or redirected); notes for the
person go to stderr. Titles and messages are printed with their control characters shown as symbols
(``printable_line``/``printable_text``): an imported title must not send escape sequences to the terminal.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.common import whole_number
from app.core.errors import UserError
from app.core.limits import check_count

if TYPE_CHECKING:
    from app.core.history.store import HistoryStore


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = commands.add_parser(
        "history",
        help="list, show, search, export and import saved conversations",
        description="The conversations saved by the window and by `llamadesk chat`.",
    )
    actions = history.add_subparsers(dest="history_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="the conversations, newest first, grouped by day")
    listing.add_argument(
        "--limit", type=whole_number(check_count), metavar="N", help="show only the N most recent"
    )
    listing.add_argument("--trash", action="store_true", help="list the deleted conversations instead")
    listing.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="print one conversation as Markdown")
    show.add_argument("id", type=int, metavar="ID", help="the number shown by `history list`")
    _add_message_option(show, "print")
    show.set_defaults(handler=run_show)

    search = actions.add_parser("search", help="find messages containing all the given words")
    search.add_argument("text", nargs="+", metavar="TEXT")
    search.add_argument(
        "--limit",
        type=whole_number(check_count),
        default=20,
        metavar="N",
        help="at most N results (default 20)",
    )
    search.set_defaults(handler=run_search)

    export = actions.add_parser("export", help="print one conversation, or all of them, as Markdown or JSON")
    export.add_argument("id", type=int, nargs="?", metavar="ID", help="one conversation (default: all)")
    export.add_argument("--format", choices=["md", "json"], default="md", help="md (default) or json")
    _add_message_option(export, "export")
    export.set_defaults(handler=run_export)

    restore = actions.add_parser("import", help="add the conversations of a JSON export (- reads stdin)")
    restore.add_argument("file", metavar="FILE")
    restore.set_defaults(handler=run_import)

    bench = actions.add_parser(
        "bench", help="time listing and searching a large generated history (in a temporary folder)"
    )
    bench.add_argument("--conversations", type=int, default=10_000, metavar="N")
    bench.add_argument("--messages", type=int, default=200_000, metavar="N", help="messages in all")
    bench.add_argument("--runs", type=int, default=7, metavar="N", help="timed runs of each query")
    bench.set_defaults(handler=run_bench)


def _add_message_option(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument(
        "--message",
        type=int,
        metavar="N",
        help=f"{verb} the version holding message N (as `history search` lists it), with the path last viewed "
        "below it, as the window shows it after going to that version; the window's own choice is unchanged",
    )


def open_store() -> HistoryStore:
    """The history, saying on stderr when a damaged file was moved aside or it could only be opened read-only."""
    from app.core.history.store import HistoryStore

    store = HistoryStore()
    if store.recovery_notice:
        print(store.recovery_notice, file=sys.stderr)
    return store


def open_store_for_saving() -> HistoryStore | None:
    """The history to save a chat in; None (the chat is kept in memory, as with --no-save) when it could only be
    opened read-only, which ``open_store`` has said."""
    store = open_store()
    if store.read_only:
        store.close()
        return None
    return store


def _local_time(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else ""


def run_list(args: argparse.Namespace) -> int:
    from app.core.history.records import printable_line

    with open_store() as store:
        if args.trash:
            trash = store.list_trash()
            for deleted in trash[: args.limit]:
                title = printable_line(deleted.display_title)
                print(f"{deleted.id:>6}  deleted {_local_time(deleted.deleted)}  {title}")
            if not trash:
                print("The trash is empty.", file=sys.stderr)
            return 0
        conversations = store.list_conversations(limit=args.limit)
        if not conversations:
            print("No saved conversations yet. Start one with: llamadesk chat", file=sys.stderr)
            return 0
        group = None
        for conversation in conversations:
            if conversation.group != group:
                group = conversation.group
                print(group)
            when = _local_time(conversation.updated)
            mode, title = printable_line(conversation.mode), printable_line(conversation.display_title)
            print(f"{conversation.id:>6}  {when}  [{mode}]  {title}")
        total = store.count_conversations()
        if total > len(conversations):
            print(f"({len(conversations)} of {total} shown)", file=sys.stderr)
    return 0


def run_show(args: argparse.Namespace) -> int:
    with open_store() as store:
        conversation = store.get_conversation(args.id)
        if conversation.deleted:
            print(f"Conversation {args.id} is in the trash.", file=sys.stderr)
        sys.stdout.write(store.export_markdown([args.id], version=args.message))
    return 0


def run_search(args: argparse.Namespace) -> int:
    from app.core.history.records import printable_line

    text = " ".join(args.text)
    with open_store() as store:
        hits = store.search(text, limit=args.limit)
    if not hits:
        print(f"No message contains {printable_line(repr(text))}.", file=sys.stderr)
        return 0
    for hit in hits:
        title = printable_line(hit.conversation_title or "New conversation")
        print(f"{hit.conversation_id:>6}  {_local_time(hit.created)}  {title}")
        print(f"        {hit.role}, message {hit.message_id}: {printable_line(hit.snippet)}")
    print(
        "Open one with: llamadesk history show ID (add --message N for the version that message is in)",
        file=sys.stderr,
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    with open_store() as store:
        if args.id is None and args.message is not None:
            raise UserError("Give the conversation's number with --message: history export ID --message N.")
        ids = None if args.id is None else [store.get_conversation(args.id).id]
        if args.format == "json":
            output = store.export_json(ids, version=args.message)
        else:
            output = store.export_markdown(ids, version=args.message)
    sys.stdout.write(output)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from app.core.history.imports import read_export_file
    from app.core.history.records import printable_line

    if args.file == "-":
        text, source = sys.stdin.read(), "The input"
    else:
        path = Path(args.file).expanduser()
        text = read_export_file(
            path
        )  # the window's checks and sentences: missing, too large, Markdown, not text
        source = str(path)
    with open_store() as store:
        result = store.import_json(text, source)
    added = len(result.imported)
    for refusal in result.refused:
        print(printable_line(refusal), file=sys.stderr)
    message = f"Imported {added} conversation{'s' if added != 1 else ''}"
    if result.skipped:
        message += f"; {result.skipped} already in the history and skipped"
    if result.refused:
        message += f"; {len(result.refused)} refused (see above)"
    print(message + ".")
    return 1 if result.refused else 0


def run_bench(args: argparse.Namespace) -> int:
    from app.bench.history import run_history_benchmark

    if args.conversations < 1 or args.messages < args.conversations or args.runs < 1:
        raise UserError("Give at least one conversation, at least one message per conversation, and one run.")
    run_history_benchmark(
        conversations=args.conversations,
        messages=args.messages,
        runs=args.runs,
        progress=lambda line: print(line, file=sys.stderr),
        out=sys.stdout,
    )
    return 0
