"""``llamadesk serve --parallel N``: the option is checked with a sentence, and a real server process answers
concurrent streams together."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from openai.types.chat import ChatCompletionMessageParam

from tests.cli.test_serve import start_server
from tests.helpers.cli import run

STORY: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Write a very long story about a dragon and a knight."}
]


def test_parallel_out_of_range_is_a_usage_error(model_path: Path) -> None:
    result = run("serve", "--model", str(model_path), "--parallel", "17", timeout=60)
    print(result.stderr)
    assert result.returncode == 2 and "--parallel" in result.stderr and "from 1 to 16" in result.stderr
    zero = run("serve", "--model", str(model_path), "--parallel", "0", timeout=60)
    assert zero.returncode == 2 and "from 1 to 16" in zero.stderr  # automatic is the window's choice only


def test_a_server_with_parallel_answers_concurrent_streams(model_path: Path, tmp_path: Path) -> None:
    server = start_server(model_path, tmp_path, "--parallel", "2")
    try:
        api = server.client()

        def ask(max_tokens: int) -> tuple[int, str | None]:
            stream = api.chat.completions.create(
                model="m",
                messages=STORY,
                max_tokens=max_tokens,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
            tokens, finish = 0, None
            for chunk in stream:
                if chunk.usage is not None:
                    tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    finish = choice.finish_reason or finish
            return tokens, finish

        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(ask, [16, 24, 32]))
        for budget, (tokens, finish) in zip([16, 24, 32], results, strict=True):
            assert 0 < tokens <= budget and finish in ("length", "stop")
    finally:
        server.process.send_signal(signal.SIGINT)
        _out, err = server.process.communicate(timeout=60)
    assert server.process.returncode == 0, err
    assert "Traceback" not in err
