"""``llamadesk bench``: the engine benchmark on one model (``--json`` for figures a script can read), or with
``--gui`` the window's GUI-thread gaps. The benchmarks themselves live in app/bench/."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from app.cli.common import add_model_arguments, loaded_model, resolve_model


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser("bench", help="measure generation and prompt speed on one model")
    add_model_arguments(bench)
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.add_argument(
        "--gui", action="store_true", help="measure how long the window's GUI thread ever waits instead"
    )
    bench.add_argument(
        "--probe",
        action="store_true",
        help="with --gui: also name the code that held Python's interpreter lock during the longest waits",
    )
    bench.add_argument(
        "--serve",
        action="store_true",
        help="compare the API's streaming endpoint with the engine directly, llama_cpp.server and llama.cpp's "
        "native llama-server instead",
    )
    bench.add_argument(
        "--native-server",
        type=Path,
        metavar="PATH",
        help="with --serve: llama.cpp's llama-server binary (default: llama-server on PATH, else the one "
        "installers/build_llama_server.py built)",
    )
    bench.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="with --serve: send N streams at once instead, to our server with --parallel N and to llama-server "
        "with -np N, beside our one stream alone (aggregate tokens/s)",
    )
    bench.add_argument(
        "--predict",
        action="store_true",
        help="check the model menu's speed prediction: predicted vs measured tokens/s for both real models",
    )
    bench.add_argument(
        "--library",
        action="store_true",
        help="measure libraries instead: recall@5 by words, meaning and both on real documents, indexing "
        "speed and search latency (needs --embedding-model)",
    )
    bench.add_argument(
        "--embedding-model",
        type=Path,
        metavar="PATH",
        help="with --library (needed) or --gui (the library then searched by meaning too): the GGUF "
        "embedding model to use",
    )
    bench.add_argument(
        "--draft",
        action="store_true",
        help="measure prompt-lookup drafting against plain decoding instead (a code rewrite, a quote, free "
        "writing) on the --model given, else on both real models",
    )
    bench.set_defaults(handler=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    if args.library:
        from app.bench.library import run_library_benchmark
        from app.core.errors import UserError

        if args.embedding_model is None:
            raise UserError("bench --library measures search by meaning too: give --embedding-model PATH.")
        library_result = run_library_benchmark(
            args.embedding_model.expanduser(),
            progress=None if args.json else lambda line: print(line, file=sys.stderr),
        )
        print(json.dumps(library_result.as_dict(), indent=2) if args.json else library_result.report())
        return 0
    if args.draft:
        from app.bench.drafting import run_drafting_benchmark

        drafting = run_drafting_benchmark(
            # --model: that model alone; else both real test models
            models=[Path(args.model).expanduser()] if args.model else None,
            progress=None if args.json else lambda line: print(line, file=sys.stderr),
            threads=args.threads or 0,
        )
        print(json.dumps(drafting.as_dict(), indent=2) if args.json else drafting.report())
        return 0
    if args.predict:
        from app.bench.predict import run_prediction_benchmark

        say = None if args.json else lambda line: print(line, file=sys.stderr)
        checks = run_prediction_benchmark(progress=say)
        if args.json:
            print(json.dumps([check.as_dict() for check in checks], indent=2))
        else:
            print("\n".join(check.report() for check in checks))
        return 0
    if args.gui:
        from app.bench.gui import run_gui_benchmark

        embedding = args.embedding_model.expanduser() if args.embedding_model else None
        gui_result = run_gui_benchmark(
            resolve_model(args), context_size=args.ctx or 2048, embedding_model=embedding, probe=args.probe
        )
        print(json.dumps(dataclasses.asdict(gui_result), indent=2) if args.json else gui_result.report())
        return 0
    if args.serve and args.parallel > 1:
        from app.bench.parallel import run_parallel_benchmark
        from app.core.llm.load_options import LoadOptions, check_load_options

        check_load_options(LoadOptions(parallel=args.parallel))  # a sentence for a number out of range
        parallel_result = run_parallel_benchmark(
            resolve_model(args),
            parallel=args.parallel,
            threads=args.threads or 0,
            context_size=args.ctx or 2048,
            native_server=args.native_server,
            progress=None if args.json else lambda line: print(line, file=sys.stderr),
        )
        print(json.dumps(parallel_result.as_dict(), indent=2) if args.json else parallel_result.report())
        return 0
    if args.serve:
        from app.bench.serve import run_serve_benchmark

        serve_result = run_serve_benchmark(
            resolve_model(args),
            threads=args.threads or 0,
            context_size=args.ctx or 2048,
            native_server=args.native_server,
            progress=None if args.json else lambda line: print(line, file=sys.stderr),
        )
        print(json.dumps(serve_result.as_dict(), indent=2) if args.json else serve_result.report())
        return 0
    from app.bench.engine import run_benchmark
    from app.bench.reopen import run_reopen_benchmark

    progress = None if args.json else lambda line: print(line, file=sys.stderr)
    with loaded_model(args, quiet=args.json) as (client, _info):
        result = client.start_job(lambda engine, _cancel: run_benchmark(engine, progress=progress)).result()
        reopen = client.start_job(lambda engine, _cancel: run_reopen_benchmark(engine, progress)).result()
    if args.json:
        print(json.dumps({**result.as_dict(), **reopen.as_dict()}, indent=2))
    else:
        print(result.report())
        print(reopen.report())
    return 0
