"""What the model-using commands share: the model arguments, loading the engine with its progress line, and the
one Ctrl+C handler that stops work instead of ending the program."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TypeVar, overload

from app.core.errors import UserError
from app.core.limits import MIN_CONTEXT, OutOfRange, check_context_size, check_threads

if TYPE_CHECKING:
    from app.core.llm.engine import ModelInfo
    from app.core.llm.service import EngineClient

N = TypeVar("N", int, float)


class BuiltinTemplateNames(Sequence[str]):
    """The built-in chat templates' names, read from app.core.llm.templates when argparse first checks a value
    or writes a command's help: that module brings Jinja, which building the parser need not load."""

    def _names(self) -> list[str]:
        from app.core.llm.templates import BUILTIN_TEMPLATES

        return list(BUILTIN_TEMPLATES)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", metavar="PATH", help="GGUF model file (default: the last used or starter model)"
    )
    parser.add_argument(
        "--ctx",
        type=whole_number(check_context_size),
        metavar="N",
        help=f"context size in tokens, {MIN_CONTEXT}.. or 0 for the model's own (default: from settings)",
    )
    parser.add_argument(
        "--threads",
        type=whole_number(check_threads),
        metavar="N",
        help="CPU threads (default: physical cores)",
    )
    parser.add_argument(
        "--chat-template",
        type=str.lower,
        choices=BuiltinTemplateNames(),
        metavar="NAME",
        help="a built-in chat template instead of the model's own, for a model whose template is refused: "
        "%(choices)s",
    )


def _checked_number(convert: Callable[[str], N], kind: str, check: Callable[[N], N]) -> Callable[[str], N]:
    """An argparse type: ``kind`` that passes ``check``, else a usage error with its sentence (exit 2)."""

    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, not {text!r}.") from None
        try:
            return check(value)
        except OutOfRange as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def whole_number(check: Callable[[int], int]) -> Callable[[str], int]:
    return _checked_number(int, "a whole number", check)


def real_number(check: Callable[[float], float]) -> Callable[[str], float]:
    """A finite number is the check's business: ``float`` alone accepts nan and inf."""
    return _checked_number(float, "a number", check)


def resolve_model(args: argparse.Namespace) -> Path:
    """The model file ``--model`` names (a path or a downloaded model's id), else the last used or starter one."""
    from app.core import settings as settings_store
    from app.core.models.inventory import default_model, find_installed

    if args.model:
        path = Path(args.model).expanduser()
        if not path.exists():
            installed = find_installed(args.model)  # a downloaded model's short id, e.g. repo:Q4_K_M
            if installed is not None:
                return installed.path
        return path
    loaded = settings_store.load()
    model = default_model(loaded.settings.last_model, loaded.settings.imported_models)
    if model is None:
        raise UserError(
            "No model given and none installed. Pass --model PATH to a .gguf file, or get the starter "
            "model (98 MB) with: llamadesk models starter."
        )
    return model


@contextlib.contextmanager
def loaded_model(
    args: argparse.Namespace, *, quiet: bool = False
) -> Iterator[tuple[EngineClient, ModelInfo]]:
    """The engine service with the chosen model loaded, and this terminal's client of it; unless ``quiet``, one
    line on stderr says what was loaded. The service (and the model) end with the block. With ``--endpoint``
    (app.cli.remote_options), a server's model answers instead."""
    if getattr(args, "endpoint", None):
        from app.cli.remote_options import connected_server

        with connected_server(args, quiet=quiet) as connected:
            yield connected
        return
    from app.core import settings as settings_store
    from app.core.llm.load_options import LoadOptions
    from app.core.llm.service import EngineService

    settings = settings_store.load().settings
    options = LoadOptions(
        context_size=args.ctx if args.ctx is not None else settings.context_size,
        threads=args.threads if args.threads is not None else settings.threads,
        gpu_layers=settings.gpu_layers,
        chat_template=getattr(args, "chat_template", None),
        parallel=getattr(args, "parallel", 1),  # llamadesk serve --parallel
    )
    model_path = resolve_model(args)
    service = EngineService()
    try:
        client = service.client("cli")
        info = client.load_and_wait(str(model_path), options)
        if not quiet:
            print(
                f"Loaded {info.display_name} ({info.quantization}, context {info.context_size} tokens) "
                f"in {info.load_seconds:.1f} s.",
                file=sys.stderr,
            )
        yield client, info
    finally:
        service.shutdown()


class Interrupted(KeyboardInterrupt):
    """Ctrl+C in a command, raised by the handler ``raise_on_interrupt`` installs instead of Python's own
    KeyboardInterrupt. Run as ``python -m app``, CPython takes a bare KeyboardInterrupt raised inside code compiled
    from a string (a dataclass's generated methods, while a module is imported lazily) for an unhandled one even
    after we catch it, and at exit kills the process by SIGINT instead of returning our exit code; it checks the
    exact type, so this subclass, which every ``except KeyboardInterrupt`` still catches, is not mistaken."""


def _raise_interrupted(_signum: int, _frame: FrameType | None) -> None:
    raise Interrupted()


def embedding_download_command() -> str:
    """The command that downloads the embedding model the catalog recommends for libraries."""
    from app.core.models.catalog import load_embedding_catalog

    entries = load_embedding_catalog()
    return f"llamadesk models download {entries[0].id}" if entries else "llamadesk models download REPO FILE"


def raise_on_interrupt() -> None:
    """From now on Ctrl+C raises Interrupted; unless Ctrl+C is ignored (a command started in the background)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _raise_interrupted)


@contextlib.contextmanager
def stop_on_interrupt(stop: Callable[[], None]) -> Iterator[None]:
    """Inside the block, Ctrl+C calls ``stop`` (end the reply, the summary or the download, keeping what is done)
    instead of ending the program mid-write."""

    def on_interrupt(_signum: int, _frame: FrameType | None) -> None:
        stop()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
