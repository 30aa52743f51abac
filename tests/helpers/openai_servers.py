"""Real OpenAI-compatible server processes on 127.0.0.1 with the test model: another LlamaDesk's ``serve`` and
llama-cpp-python's own server (``python -m llama_cpp.server``). Each is started once per test module."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from app.bench.serve import llama_cpp_chat_format
from tests.helpers.cli import llamadesk_command

CONTEXT = 2048


@contextmanager
def llamadesk_serve(model_path: Path, home: Path) -> Iterator[str]:
    """``llamadesk serve`` in its own home; yields its base URL."""
    process = subprocess.Popen(
        llamadesk_command("serve", "--model", str(model_path), "--port", "0", "--ctx", str(CONTEXT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"LLAMADESK_HOME": str(home)},
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # printed once the socket listens and the model is loaded
    match = re.search(r"(http://\S+/v1)", line)
    if match is None:
        process.kill()
        pytest.fail(f"llamadesk serve printed no URL: {line!r} {process.communicate()[1]}")
    try:
        yield match.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


@contextmanager
def llama_cpp_server(model_path: Path) -> Iterator[str]:
    """llama-cpp-python's server on a free port, with the same context; yields its base URL. A file without a
    chat template of its own (Gemma 3 270M, a base model) is given the chat format of the built-in template
    LlamaDesk gives it: left to guess, the server wraps it in Llama 2's format, and Gemma answers that with
    nothing."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    _builtin, chat_format = llama_cpp_chat_format(model_path)
    # A file, not a pipe: its verbose log would fill a pipe nobody reads and stall the server.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                str(CONTEXT),
                *(["--chat_format", chat_format] if chat_format else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        base_url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx2.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log.seek(0)
                pytest.fail(f"llama_cpp.server did not start: {log.read()[-2000:]!r}")
            time.sleep(0.25)
        try:
            yield base_url
        finally:
            process.terminate()
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
