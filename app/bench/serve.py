"""``llamadesk bench --serve``: what serving costs. One request (same prompt, same max_tokens, greedy) four ways, side
by side in one run:

- the engine directly (this process, the engine service's streaming path, no HTTP);
- our streaming endpoint (a ``llamadesk serve`` process, read by a lean reader of its events);
- llama-cpp-python's own server (``python -m llama_cpp.server``, same threads, context and batch size, same reader,
  and for a file without a chat template of its own the chat format of the built-in template LlamaDesk uses);
- llama.cpp's native C++ ``llama-server``, built from the same llama.cpp by installers/build_llama_server.py (same
  threads, context and batch size, one slot, same reader, and for a file without a chat template of its own the very
  Jinja source of the built-in template LlamaDesk uses). It is the bar for time to first token: what is left when
  nothing but llama.cpp and an HTTP server written in C++ stand between the request and the first token.

Generation tokens/s is counted from the first token to the last (so it is the generation rate, not the prompt);
time to first token from sending the request to the first delta with text, measured the same way for every server.
The ways take turns, in rotating order, after one warm-up request each, and the medians are reported: on a shared
machine one run's speed differs from the next by more than the gap measured. The models stay loaded together:
llama.cpp maps the weights from the file, so they share one copy in memory.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import httpx2
import platformdirs

from app import APP_NAME
from app.core.errors import UserError
from app.core.llm.context import ChatMessage
from app.core.llm.gguf_check import check_model_file
from app.core.llm.load_options import LoadOptions, builtin_template_for, physical_cores
from app.core.llm.service import EngineClient, EngineService
from app.core.llm.templates import BUILTIN_TEMPLATES
from app.core.modes import SamplingOptions

PROMPT = (
    "Write a long, detailed story about a lighthouse keeper who finds a map in a bottle, "
    "and describe every step of the journey that follows."
)
MAX_TOKENS = 128
ROUNDS = 3
BATCH_SIZE = LoadOptions().batch_size
START_TIMEOUT_S = 180.0
# What ``llama-cpp-python[server]`` adds; without them ``python -m llama_cpp.server`` cannot start.
LLAMA_SERVER_MODULES = (
    "fastapi",
    "pydantic_settings",
    "starlette_context",
    "sse_starlette",
    "uvicorn",
    "yaml",
)
# llama_cpp.server's ``--chat_format`` names for the formats of LlamaDesk's built-in templates. Without one, it
# would format the prompt for a file with no template of its own otherwise than LlamaDesk does, and a model
# answers a format it was not tuned on with something else entirely (Gemma: with nothing).
LLAMA_CPP_CHAT_FORMATS = {
    "chatml": "chatml",
    "gemma": "gemma",
    "llama3": "llama-3",
    "mistral": "mistral-instruct",
}
NO_CHAT_FORMAT = (
    "llama_cpp.server has no chat format like LlamaDesk's built-in {title} template, which {model} is run with, "
    "so it was not measured: the two would not answer the same prompt."
)
LLAMA_SERVER_INSTALL = (
    "llama-cpp-python's own server needs extra packages ({missing}); install them with "
    "pip install 'llama-cpp-python[server]' (or pip install -e '.[test]' in a LlamaDesk checkout), "
    "then run the benchmark again."
)
NATIVE_SERVER_MISSING = (
    "llama.cpp's native llama-server was not found, so it was not measured: build it with "
    "python installers/build_llama_server.py (several minutes), or give --native-server PATH."
)
NATIVE_SERVER_NOT_A_FILE = (
    "llama.cpp's native llama-server was not measured: {path} is not a file; give --native-server the path "
    "of a llama-server binary, or build one with python installers/build_llama_server.py."
)
# Goals the report judges against: what serving over HTTP may cost at most.
GOAL_OURS_VS_ENGINE = 0.97  # stream tokens/s of our endpoint over the engine driven directly
GOAL_TTFT_BEHIND_NATIVE_MS = 10.0  # our time to first token minus llama-server's


def native_tools_dir(llama_cpp_version: str = "") -> Path:
    """Where installers/build_llama_server.py builds llama.cpp's own ``llama-server`` and ``llama-bench`` from the
    llama.cpp that the installed llama-cpp-python vendors (one folder per version, so an upgrade builds anew).

    The user's cache folder, on purpose not the one LLAMADESK_HOME moves: the build is a developer's tool that every
    home shares, and the test suite gives each test a home of its own, where it would never be found."""
    version = llama_cpp_version or importlib.metadata.version("llama-cpp-python")
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / "llama.cpp" / version


def native_tool_path(name: str, llama_cpp_version: str = "") -> Path:
    """The path the build script puts the tool ``name`` at (it may not be built yet)."""
    suffix = ".exe" if sys.platform == "win32" else ""
    return native_tools_dir(llama_cpp_version) / "build" / "bin" / f"{name}{suffix}"


def find_native_server(given: Path | None = None) -> tuple[Path | None, str]:
    """llama.cpp's ``llama-server``: ``given``, else the one on PATH, else the build script's; with why not, when
    there is none (a sentence for the report)."""
    if given is not None:
        return (given, "") if given.is_file() else (None, NATIVE_SERVER_NOT_A_FILE.format(path=given))
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path), ""
    built = native_tool_path("llama-server")
    return (built, "") if built.is_file() else (None, NATIVE_SERVER_MISSING)


NATIVE_NAME = "llama-server (llama.cpp, C++)"


@dataclass
class Run:
    """One request: seconds to the first token, tokens generated, and tokens/s from the first to the last."""

    ttft_s: float
    tokens: int
    tps: float


@dataclass
class Way:
    name: str
    runs: list[Run] = field(default_factory=list)

    @property
    def tps(self) -> float:
        return statistics.median(run.tps for run in self.runs) if self.runs else 0.0

    @property
    def ttft_s(self) -> float:
        return statistics.median(run.ttft_s for run in self.runs) if self.runs else 0.0

    @property
    def tokens(self) -> int:
        return self.runs[-1].tokens if self.runs else 0


@dataclass
class ServeBenchResult:
    model: str
    threads: int
    context_size: int
    batch_size: int
    max_tokens: int
    rounds: int
    engine: Way
    ours: Way
    theirs: Way
    native: Way = field(default_factory=lambda: Way(NATIVE_NAME))
    # Why llama_cpp.server was not measured (how to install it, or that it has no chat format like ours).
    theirs_missing: str = ""
    # Why llama-server was not measured (how to build it), and the binary that was when it was.
    native_missing: str = ""
    native_server: str = ""
    # The built-in chat template LlamaDesk runs the model with ("" for the file's own), and the chat format
    # llama_cpp.server was given for it (llama-server is given the template's own Jinja source).
    chat_template: str = ""
    chat_format: str = ""

    @property
    def ours_vs_engine(self) -> float:
        return self.ours.tps / self.engine.tps if self.engine.tps else 0.0

    @property
    def ours_vs_theirs(self) -> float:
        return self.ours.tps / self.theirs.tps if self.theirs.tps else 0.0

    @property
    def ours_vs_native(self) -> float:
        return self.ours.tps / self.native.tps if self.native.tps else 0.0

    @property
    def added_ttft_ms(self) -> float:
        return (self.ours.ttft_s - self.engine.ttft_s) * 1000

    @property
    def ttft_behind_native_ms(self) -> float | None:
        """Our time to first token minus llama-server's (None: llama-server not measured)."""
        return (self.ours.ttft_s - self.native.ttft_s) * 1000 if self.native.runs else None

    def as_dict(self) -> dict[str, object]:
        figures = asdict(self)
        figures |= {
            "ours_vs_engine": self.ours_vs_engine,
            "ours_vs_theirs": self.ours_vs_theirs,
            "ours_vs_native": self.ours_vs_native,
            "added_ttft_ms": self.added_ttft_ms,
            "ttft_behind_native_ms": self.ttft_behind_native_ms,
            "goal_ours_vs_engine": GOAL_OURS_VS_ENGINE,
            "goal_ttft_behind_native_ms": GOAL_TTFT_BEHIND_NATIVE_MS,
        }
        for way in ("engine", "ours", "theirs", "native"):
            figures[way] |= {"median_tps": getattr(self, way).tps, "median_ttft_s": getattr(self, way).ttft_s}
        return figures

    def report(self) -> str:
        lines = [
            f"Model: {self.model} ({self.threads} threads, context {self.context_size}, batch {self.batch_size}); "
            f"{self.max_tokens} tokens at most, greedy; medians of {self.rounds} rounds",
        ]
        if self.chat_template:
            title = BUILTIN_TEMPLATES[self.chat_template].title
            given = f"--chat_format {self.chat_format}" if self.chat_format else "not measured"
            lines.append(
                f"Chat template: built-in {title} (the file has none; llama_cpp.server: {given}; "
                "llama-server: the same Jinja source)"
            )
        if self.native_server:
            lines.append(f"llama-server: {self.native_server}")
        lines.append(f"{'':34}{'tokens/s':>10}{'first token':>14}{'tokens':>8}")
        for way in (self.engine, self.ours, self.theirs, self.native):
            if way.runs:
                lines.append(f"{way.name:34}{way.tps:10.1f}{way.ttft_s * 1000:11.1f} ms{way.tokens:8d}")
            else:
                lines.append(f"{way.name:34}{'not measured':>24}")
        lines.append(f"  ours / engine = {self.ours_vs_engine:.3f}   (goal >= {GOAL_OURS_VS_ENGINE})")
        lines.append(
            f"  added time to first token = {self.added_ttft_ms:.1f} ms   (over the engine directly)"
        )
        behind_native = self.ttft_behind_native_ms
        if behind_native is not None:
            lines.append(
                f"  ours - llama-server time to first token = {behind_native:+.1f} ms   "
                f"(goal <= {GOAL_TTFT_BEHIND_NATIVE_MS:.0f} ms)"
            )
            lines.append(f"  ours / llama-server = {self.ours_vs_native:.3f}   (tokens/s)")
        else:
            lines.append(f"  {self.native_missing}")
        if self.theirs.runs:
            lines.append(f"  ours / llama_cpp.server = {self.ours_vs_theirs:.3f}   (goal >= 1.0: not slower)")
        else:
            lines.append(f"  {self.theirs_missing}")
        return "\n".join(lines)


def llama_cpp_chat_format(model_path: Path) -> tuple[str, str]:
    """The built-in template LlamaDesk runs ``model_path`` with by default ("": the file's own), and the
    ``--chat_format`` that gives llama_cpp.server the same prompt ("": none, or none like it)."""
    builtin = builtin_template_for(check_model_file(model_path), LoadOptions()) or ""
    return builtin, LLAMA_CPP_CHAT_FORMATS.get(builtin, "")


def missing_llama_server_modules() -> list[str]:
    return [name for name in LLAMA_SERVER_MODULES if importlib.util.find_spec(name) is None]


def run_serve_benchmark(
    model_path: Path,
    *,
    threads: int = 0,
    context_size: int = 2048,
    max_tokens: int = MAX_TOKENS,
    rounds: int = ROUNDS,
    native_server: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> ServeBenchResult:
    """``native_server``: llama.cpp's ``llama-server`` binary; None: looked for (find_native_server)."""
    threads = threads or physical_cores()
    say = progress or (lambda _line: None)
    messages: list[ChatMessage] = [{"role": "user", "content": PROMPT}]
    engine, ours = Way("engine directly (no HTTP)"), Way("our streaming endpoint")
    theirs, native = Way("llama_cpp.server"), Way(NATIVE_NAME)
    native_binary, native_missing = find_native_server(native_server)
    missing = missing_llama_server_modules()
    theirs_missing = LLAMA_SERVER_INSTALL.format(missing=", ".join(missing)) if missing else ""
    builtin, chat_format = llama_cpp_chat_format(model_path)
    if builtin and not chat_format and not theirs_missing:
        theirs_missing = NO_CHAT_FORMAT.format(title=BUILTIN_TEMPLATES[builtin].title, model=model_path.name)
    with ExitStack() as stack:
        say("Starting llamadesk serve…")
        ours_url = stack.enter_context(_our_server(model_path, threads, context_size))
        measures: list[tuple[Way, Callable[[], Run]]] = []
        if not theirs_missing:
            say("Starting llama_cpp.server…")
            theirs_url = stack.enter_context(
                _llama_cpp_server(model_path, threads, context_size, chat_format)
            )
            measures.append((theirs, lambda: _through_http(theirs_url, messages, max_tokens, usage=False)))
        if native_binary is not None:
            say("Starting llama-server…")
            native_url = stack.enter_context(
                _native_server(native_binary, model_path, threads, context_size, builtin)
            )
            measures.append((native, lambda: _through_http(native_url, messages, max_tokens, usage=True)))
        say("Loading the engine in this process…")
        client = stack.enter_context(_engine_client(model_path, threads, context_size))
        measures.append((engine, lambda: _direct(client, messages, max_tokens)))
        measures.append((ours, lambda: _through_http(ours_url, messages, max_tokens, usage=True)))
        for _way, measure in measures:  # warm-up: the first reply after a load is slow, and fills the cache
            measure()
        for round_number in range(rounds):
            shift = round_number % len(measures)
            for way, measure in measures[shift:] + measures[:shift]:
                way.runs.append(measure())
            say(f"Round {round_number + 1} of {rounds} done.")
    return ServeBenchResult(
        model=model_path.name,
        threads=threads,
        context_size=context_size,
        batch_size=BATCH_SIZE,
        max_tokens=max_tokens,
        rounds=rounds,
        engine=engine,
        ours=ours,
        theirs=theirs,
        native=native,
        theirs_missing=theirs_missing,
        native_missing=native_missing,
        native_server=str(native_binary or ""),
        chat_template=builtin,
        chat_format=chat_format,
    )


def _direct(client: EngineClient, messages: list[ChatMessage], max_tokens: int) -> Run:
    started = time.perf_counter()
    reply = client.stream_chat(messages, SamplingOptions(temperature=0.0, max_tokens=max_tokens))
    first = last = 0.0
    for _piece in reply:
        last = time.perf_counter()
        first = first or last
    tokens = reply.stats.generated_tokens if reply.stats else 0
    return _run(started, first, last, tokens)


def _through_http(base_url: str, messages: list[ChatMessage], max_tokens: int, *, usage: bool) -> Run:
    """One streamed request, read by a lean reader of server-sent events: the ``openai`` client spends about
    0.65 ms of CPU on each chunk, which on a 2-core machine is taken from llama.cpp and would be counted against
    the server. Tokens: the server's usage where it reports it (llama_cpp.server does not support
    ``stream_options``), else one per text chunk, as it streams them."""
    body: dict[str, object] = {
        "model": "bench",
        "messages": [{"role": "user", "content": message.get("content", "")} for message in messages],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    if usage:
        body["stream_options"] = {"include_usage": True}
    first = last = 0.0
    chunks = 0
    reported = 0
    # The client is made first: making one loads the TLS certificates (tens of ms), which is not the server's time.
    with httpx2.Client(timeout=600) as client:
        started = time.perf_counter()
        with client.stream("POST", f"{base_url}/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                    continue
                chunk = json.loads(line[5:])
                if chunk.get("usage"):
                    reported = int(chunk["usage"]["completion_tokens"])
                choices = chunk.get("choices") or []
                if choices and choices[0].get("delta", {}).get("content"):
                    last = time.perf_counter()
                    first = first or last
                    chunks += 1
    return _run(started, first, last, reported or chunks)


def _run(started: float, first: float, last: float, tokens: int) -> Run:
    if not first:
        raise UserError("The benchmark's request produced no text; try another model.")
    tps = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return Run(ttft_s=first - started, tokens=tokens, tps=tps)


@contextmanager
def _engine_client(model_path: Path, threads: int, context_size: int) -> Iterator[EngineClient]:
    service = EngineService()
    try:
        client = service.client("bench")
        client.load_and_wait(
            str(model_path), LoadOptions(context_size=context_size, threads=threads, batch_size=BATCH_SIZE)
        )
        yield client
    finally:
        service.shutdown()


@contextmanager
def _our_server(model_path: Path, threads: int, context_size: int, parallel: int = 1) -> Iterator[str]:
    """``llamadesk serve`` on ``model_path``; ``parallel``: its ``--parallel`` (app.bench.parallel)."""
    command = [sys.executable, "-m", "app", "serve", "--model", str(model_path), "--port", "0"]
    command += ["--ctx", str(context_size), "--threads", str(threads), "--parallel", str(parallel)]
    with _process(command) as process:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once it listens with the model loaded
        match = re.search(r"(http://\S+/v1)", line)
        if match is None:
            process.kill()
            raise UserError(f"llamadesk serve did not start: {_stderr_of(process)}")
        yield match.group(1)


@contextmanager
def _llama_cpp_server(model_path: Path, threads: int, context_size: int, chat_format: str) -> Iterator[str]:
    """llama_cpp.server on ``model_path``; ``chat_format`` "": the file's own chat template, as it reads it."""
    port = _free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--n_threads", str(threads), "--n_threads_batch", str(threads)]
    command += ["--n_ctx", str(context_size), "--n_batch", str(BATCH_SIZE), "--verbose", "False"]
    if chat_format:
        command += ["--chat_format", chat_format]
    with _process(command) as process:
        base_url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise UserError(f"llama_cpp.server did not start: {_stderr_of(process)}")
            try:
                if httpx2.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise UserError(f"llama_cpp.server did not answer within {START_TIMEOUT_S:.0f} s.")
        yield base_url


@contextmanager
def _native_server(
    binary: Path, model_path: Path, threads: int, context_size: int, builtin: str, parallel: int = 1
) -> Iterator[str]:
    """llama.cpp's ``llama-server`` on ``model_path`` with ``parallel`` slots (one unless app.bench.parallel asks
    for more); ``builtin`` "": the file's own chat template, else the Jinja source of that built-in template, so it
    formats the prompt exactly as LlamaDesk does."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="llamadesk-llama-server-") as scratch:
        command = [str(binary), "--model", str(model_path), "--host", "127.0.0.1", "--port", str(port)]
        command += [
            "--threads",
            str(threads),
            "--threads-batch",
            str(threads),
            "--ctx-size",
            str(context_size),
        ]
        # The slots, flash attention and the batch size: as LlamaDesk's engine loads the model.
        command += [
            "--batch-size",
            str(BATCH_SIZE),
            "--parallel",
            str(parallel),
            "--flash-attn",
            "on" if LoadOptions().flash_attention else "off",
            "--jinja",
        ]
        if builtin:
            template_file = Path(scratch) / f"{builtin}.jinja"
            template_file.write_text(BUILTIN_TEMPLATES[builtin].source, encoding="utf-8")
            command += ["--chat-template-file", str(template_file)]
        # Its log goes to a file: it writes a lot, and a pipe nobody reads would fill and stop it mid-benchmark.
        log_file = Path(scratch) / "llama-server.log"
        with log_file.open("w", encoding="utf-8") as log, _process(command, output=log) as process:
            base_url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise UserError(f"llama-server did not start: {_last_line(log_file, process)}")
                try:
                    # 503 while it loads the model; 200 with {"status": "ok"} once it serves.
                    health = httpx2.get(f"{base_url}/health", timeout=2)
                    if health.status_code == 200 and health.json().get("status") == "ok":
                        break
                except (httpx2.TransportError, ValueError):
                    pass
                time.sleep(0.1)
            else:
                raise UserError(f"llama-server did not answer within {START_TIMEOUT_S:.0f} s.")
            yield f"{base_url}/v1"


def _last_line(log_file: Path, process: subprocess.Popen[str]) -> str:
    lines = [
        line for line in log_file.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()
    ]
    return lines[-1].strip() if lines else f"it exited with code {process.returncode}"


@contextmanager
def _process(command: list[str], output: IO[str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """``command`` running, ended as the block ends; its output piped, or written to ``output``."""
    process = subprocess.Popen(
        command,
        stdout=output or subprocess.PIPE,
        stderr=output or subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=os.environ.copy(),
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _stderr_of(process: subprocess.Popen[str]) -> str:
    process.kill()
    _out, err = process.communicate()
    return err.strip().splitlines()[-1] if err.strip() else f"it exited with code {process.returncode}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
