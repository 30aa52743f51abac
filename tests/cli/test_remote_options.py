"""``llamadesk chat|summarize --endpoint URL``: a real process talking to a real server on 127.0.0.1 (another
LlamaDesk's ``serve`` with the real model, or our misbehaving one), and the history it leaves."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli.remote_options import remote_server
from app.core import settings as settings_store
from app.core.history.store import HistoryStore
from app.core.paths import app_paths
from tests.fixtures.hostile_openai import HostileServer, running_hostile_server
from tests.fixtures.misbehaving_openai import MODEL, RunningServer, running_server
from tests.helpers.cli import run
from tests.helpers.openai_servers import llamadesk_serve

QUESTION = "What is the capital of France? Answer in one word."
# What a terminal acts on: every C0 control but newline and tab, DEL, every C1 control.
CONTROLS = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))]


@pytest.fixture(scope="module")
def faulty() -> Iterator[RunningServer]:
    with running_server() as server:
        yield server


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with running_hostile_server() as server:
        yield server


@pytest.fixture(scope="module")
def llamadesk_url(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llamadesk_serve(model_path, tmp_path_factory.mktemp("serve-home")) as url:
        yield url


def test_a_stream_dropped_midway_prints_the_part_keeps_it_and_exits_1(faulty: RunningServer) -> None:
    result = run("chat", "--endpoint", faulty.url("drop"), "-p", QUESTION, timeout=120)
    print(result.stderr)
    assert result.returncode == 1
    assert result.stdout.startswith("Hello wor")
    assert "broke off" in result.stderr and "Traceback" not in result.stderr
    with HistoryStore() as store:
        [summary] = store.list_conversations()
        conversation = store.get_conversation(summary.id)
        assert conversation.model == f"{MODEL} @ {faulty.url('drop')}"
        user, partial = store.messages(conversation.id)
        assert (user.content, partial.content, partial.state) == (QUESTION, "Hello wor", "stopped")


def test_a_server_that_refuses_the_key_is_one_sentence(faulty: RunningServer) -> None:
    result = run(
        "chat", "--endpoint", faulty.url("unauthorized"), "--api-key", "wrong", "-p", "Hi", timeout=120
    )
    assert result.returncode == 1
    assert "refused the API key given (401)" in result.stderr and "Traceback" not in result.stderr


def test_a_url_that_is_not_one_is_a_usage_error() -> None:
    result = run("chat", "--endpoint", "gpu-box:8000", "-p", "Hi", timeout=60)
    assert result.returncode == 2 and "not a server address" in result.stderr


def test_the_saved_key_goes_only_to_the_url_it_was_saved_for() -> None:
    settings = settings_store.Settings(remote_url="http://gpu-box:8000/v1", remote_api_key="saved-key")
    settings_store.save(settings)

    def args(endpoint: str, key: str | None = None) -> argparse.Namespace:
        return argparse.Namespace(endpoint=endpoint, api_key=key, remote_model=None, ctx=None)

    assert remote_server(args("http://gpu-box:8000/v1/")).api_key == "saved-key"
    assert remote_server(args("http://elsewhere:8000/v1")).api_key == ""
    assert remote_server(args("http://gpu-box:8000/v1", "given")).api_key == "given"


def test_escape_sequences_from_a_server_never_reach_the_terminal(hostile: HostileServer) -> None:
    result = run("chat", "--endpoint", hostile.url("escapes"), "-p", "Hi", timeout=120)
    print(repr(result.stdout), repr(result.stderr))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Hi there.\n\tIndented line.")
    assert not any(control in result.stdout + result.stderr for control in CONTROLS)
    with HistoryStore() as store:
        [summary] = store.list_conversations()
        conversation = store.get_conversation(summary.id)
        assert conversation.model == f"evil-model @ {hostile.url('escapes')}"
        assert store.messages(conversation.id)[-1].content == "Hi there.\n\tIndented line."

    refused = run("chat", "--endpoint", hostile.url("escape-error"), "-p", "Hi", "--no-save", timeout=120)
    print(repr(refused.stderr))
    assert refused.returncode == 1 and "failed while answering (500: CUDA out of memory)" in refused.stderr
    assert not any(control in refused.stdout + refused.stderr for control in CONTROLS)
    assert "pwned" not in refused.stderr and "Traceback" not in refused.stderr


def test_keep_alives_alone_end_the_reply_after_remote_wait(hostile: HostileServer) -> None:
    started = time.monotonic()
    result = run("chat", "--endpoint", hostile.url("pings"), "--remote-wait", "1", "-p", "Hi", timeout=120)
    took = time.monotonic() - started
    print(f"ended after {took:.1f} s: {result.stderr}")
    assert result.returncode == 1 and took < 30
    assert "sent nothing of the reply for 1 second" in result.stderr and "--remote-wait" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_line_without_end_is_a_sentence(hostile: HostileServer) -> None:
    result = run("chat", "--endpoint", hostile.url("endless-line"), "-p", "Hi", "--no-save", timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "sent a line longer than 4.0 MB" in result.stderr and "OpenAI-compatible" in result.stderr


def test_remote_wait_out_of_range_is_a_usage_error() -> None:
    for wrong in ("0", "soon"):
        result = run(
            "chat", "--endpoint", "http://127.0.0.1:1/v1", "--remote-wait", wrong, "-p", "Hi", timeout=60
        )
        assert result.returncode == 2 and "--remote-wait" in result.stderr, result.stderr
    assert (
        "from 1 to 3600 seconds, not 0"
        in run(
            "summarize", "x.txt", "--endpoint", "http://127.0.0.1:1/v1", "--remote-wait", "0", timeout=60
        ).stderr
    )


def test_remote_wait_comes_from_the_command_line_else_the_settings() -> None:
    settings_store.save(settings_store.Settings(remote_wait_seconds=45))

    def args(wait: int | None) -> argparse.Namespace:
        return argparse.Namespace(
            endpoint="http://gpu-box:8000/v1", api_key=None, remote_model=None, ctx=None, remote_wait=wait
        )

    assert remote_server(args(None)).wait_seconds == 45
    assert remote_server(args(3)).wait_seconds == 3
    app_paths().settings_file.write_text('{"remote_wait_seconds": 0}', encoding="utf-8")
    loaded = settings_store.load()
    assert loaded.settings.remote_wait_seconds == settings_store.Settings().remote_wait_seconds
    assert any("from 1 to 3600 seconds, not 0" in warning for warning in loaded.warnings)


def test_chat_with_another_llamadesk(llamadesk_url: str) -> None:
    result = run("chat", "--endpoint", llamadesk_url, "--temp", "0", "--max-tokens", "12", "-p", QUESTION)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stderr
    with HistoryStore() as store:
        [summary] = store.list_conversations()
        conversation = store.get_conversation(summary.id)
        assert conversation.model.endswith(f" @ {llamadesk_url}")
        reply = store.messages(conversation.id)[-1]
        assert reply.state == "complete" and reply.stats is not None
        assert reply.content and reply.content in result.stdout
        assert reply.stats["engine"] == "server" and reply.stats["server"] == llamadesk_url


def test_summarize_with_another_llamadesk(llamadesk_url: str, tmp_path: Path) -> None:
    document = tmp_path / "notes.txt"
    document.write_text(
        "The Eiffel Tower is in Paris. It was built for the 1889 World's Fair and is 330 metres tall. "
        "Millions of people visit it every year.\n",
        encoding="utf-8",
    )
    result = run("summarize", str(document), "--endpoint", llamadesk_url, "--no-cache")
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and "one pass" in result.stderr
