"""``llamadesk library``: add folders and files to a named library (indexed, and kept current by adding again),
list and remove libraries, and search one by words and meaning.

Results go to stdout (``search --json`` for programs); progress and notes go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.common import embedding_download_command, stop_on_interrupt, whole_number
from app.core.limits import check_count
from app.core.units import counted

if TYPE_CHECKING:
    from app.core.library.database import LibraryDatabase
    from app.core.library.indexing import IndexProgress, IndexReport


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    library = commands.add_parser(
        "library",
        help="index folders of documents into named libraries and search them",
        description="Libraries: folders and files indexed once and kept current, searched by words and meaning.",
    )
    actions = library.add_subparsers(dest="library_command", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add", help="add folders or files to a library (created if new) and index what is new or changed"
    )
    add.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH", help="folders or files (none: just update)"
    )
    add.add_argument("--name", required=True, metavar="NAME", help="the library's name")
    add.add_argument(
        "--embedding-model",
        type=Path,
        metavar="PATH",
        help="a GGUF embedding model for search by meaning (default: the recommended one, once downloaded; "
        "without any: search by words alone)",
    )
    add.set_defaults(handler=run_add)

    listing = actions.add_parser("list", help="the libraries, their folders, files and passages")
    listing.set_defaults(handler=run_list)

    remove = actions.add_parser("remove", help="forget a library (its files stay where they are)")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(handler=run_remove)

    search = actions.add_parser("search", help="the passages of a library that best answer a question")
    search.add_argument("name", metavar="NAME")
    search.add_argument("query", nargs="+", metavar="QUERY")
    search.add_argument(
        "--top", type=whole_number(check_count), default=5, metavar="K", help="how many (default 5)"
    )
    search.add_argument("--json", action="store_true", help="print a JSON list of hits, best first")
    search.set_defaults(handler=run_search)


def _open() -> LibraryDatabase:
    from app.core.library.database import LibraryDatabase
    from app.core.paths import app_paths

    db = LibraryDatabase(app_paths().ensure().library_db)
    if db.notice:
        print(db.notice, file=sys.stderr)
    return db


def run_add(args: argparse.Namespace) -> int:
    from app.core.errors import UserError
    from app.core.library.indexing import define_library, index_library
    from app.core.models.inventory import installed_embedding_model

    roots = []
    for path in args.paths:
        resolved = path.expanduser().resolve()
        if not resolved.exists():
            raise UserError(f"{path} does not exist; give a folder or a file to add.")
        roots.append(resolved)
    model = args.embedding_model.expanduser().resolve() if args.embedding_model else None
    if model is not None and not model.is_file():
        raise UserError(f"The embedding model {args.embedding_model} does not exist.")
    db = _open()
    try:
        if model is None and not _has_embedding_model(db, args.name):
            model = installed_embedding_model()
            if model is not None:
                print(
                    f"Search by meaning with {model.name}, the recommended embedding model.", file=sys.stderr
                )
        define_library(db, args.name, roots, model)
        cancel = threading.Event()
        with stop_on_interrupt(cancel.set):  # Ctrl+C: stop after the file being read, keep what is indexed
            report = index_library(db, args.name, progress=_progress_line, cancel=cancel)
    finally:
        db.close()
    _print_report(report)
    return 130 if report.cancelled else 0


def _has_embedding_model(db: LibraryDatabase, name: str) -> bool:
    from app.core.library.indexing import LibraryNotFound, embedding_model_of, library_id

    try:
        return embedding_model_of(db, library_id(db, name)) is not None
    except LibraryNotFound:
        return False


def _progress_line(progress: IndexProgress) -> None:
    if not sys.stderr.isatty():
        return
    left = f", about {progress.seconds_left:.0f} s left" if progress.seconds_left else ""
    line = (
        f"Indexing: {progress.files_done}/{progress.files_total} files, "
        f"{counted(progress.passages, 'passage')}{left}"
    )
    print(f"\r{line[:120]:<120}", end="", file=sys.stderr, flush=True)


def _print_report(report: IndexReport) -> None:
    if sys.stderr.isatty():
        print(file=sys.stderr)
    changes = [
        f"{report.added} new",
        f"{report.updated} changed",
        f"{report.unchanged} unchanged",
        f"{report.removed} removed",
    ]
    status = "Stopped" if report.cancelled else "Indexed"
    print(
        f'{status} library "{report.library}": {", ".join(changes)} files, '
        f"{counted(report.passages, 'passage')} written, in {report.seconds:.1f} s.",
        file=sys.stderr,
    )
    if report.cancelled:
        print("What was indexed is kept; run the same command again to go on.", file=sys.stderr)
    if report.words_only:
        print(
            "No embedding model for this library, so it is searched by words alone. To search by meaning too, "
            f"get the recommended one ({embedding_download_command()}) and add the library again, or give "
            "--embedding-model PATH.",
            file=sys.stderr,
        )
    for problem in report.problems:
        print(f"  {problem.path}: {problem.sentence}", file=sys.stderr)


def run_list(_args: argparse.Namespace) -> int:
    from app.core.library.indexing import list_libraries

    db = _open()
    try:
        libraries = list_libraries(db)
    finally:
        db.close()
    if not libraries:
        print("No libraries yet. Add one with: llamadesk library add FOLDER --name NAME", file=sys.stderr)
    for library in libraries:
        search = "words and meaning" if library.embedding_model else "words only"
        problems = f", {counted(library.problems, 'file')} not readable" if library.problems else ""
        print(
            f"{library.name}: {counted(library.files, 'file')}, {counted(library.passages, 'passage')}"
            f"{problems}; search by {search}"
        )
        for root in library.roots:
            print(f"  {root}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from app.core.library.indexing import remove_library

    db = _open()
    try:
        remove_library(db, args.name)
    finally:
        db.close()
    print(f'Removed the library "{args.name}" (its files are untouched).', file=sys.stderr)
    return 0


def run_search(args: argparse.Namespace) -> int:
    from app.core.library.embedding import Embedder
    from app.core.library.indexing import embedding_model_of, library_id
    from app.core.library.search import search_library

    query = " ".join(args.query)
    db = _open()
    embedder = None
    try:
        model = embedding_model_of(db, library_id(db, args.name))
        if model is not None:
            embedder = Embedder(model)
        hits = search_library(db, args.name, query, top=args.top, embedder=embedder)
    finally:
        if embedder is not None:
            embedder.close()
        db.close()
    if args.json:
        print(json.dumps([hit.to_dict() for hit in hits], ensure_ascii=False, indent=2))
        return 0
    if not hits:
        print("Nothing in the library matches that.", file=sys.stderr)
    for number, hit in enumerate(hits, 1):
        text = " ".join(hit.text.split())
        print(f"{number}. {hit.path}, {hit.label} (score {hit.score:.4f})\n   {text[:300]}")
    return 0
