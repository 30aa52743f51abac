"""``llamadesk chat|summarize --endpoint URL``: a real process talking to a real server on 127.0.0.1 (another
LlamaDesk's ``serve`` with the real model, or our misbehaving one), and the history it leaves."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli.remote_options import remote_server
from app.core import settings as settings_store
from app.core.history.store import HistoryStore
from tests.fixtures.misbehaving_openai import MODEL, RunningServer, running_server
from tests.helpers.cli import run
from tests.helpers.openai_servers import llamadesk_serve

QUESTION = "What is the capital of France? Answer in one word."


@pytest.fixture(scope="module")
def faulty() -> Iterator[RunningServer]:
    with running_server() as server:
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
