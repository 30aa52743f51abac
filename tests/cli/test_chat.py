"""``llamadesk chat`` as a person runs it: a real process, the real model."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.helpers.cli import llamadesk_command, run


def test_one_shot_prompt(model_path: Path) -> None:
    result = run("chat", "--model", str(model_path), "--temp", "0", "-p", "What is the capital of France?")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    assert "Traceback" not in result.stderr


def test_piped_lines_are_turns_of_one_conversation(model_path: Path) -> None:
    result = run(
        "chat",
        "--model",
        str(model_path),
        "--temp",
        "0",
        "--max-tokens",
        "40",
        "--stats",
        stdin="What is the capital of France?\nAnd what is the capital of Italy?\n",
    )
    assert result.returncode == 0, result.stderr
    replies = [block for block in result.stdout.split("\n\n") if block.strip()]
    assert len(replies) == 2
    assert "Paris" in replies[0]
    stats_lines = [line for line in result.stderr.splitlines() if "tokens/s" in line]
    assert len(stats_lines) == 2
    # The second turn reused the cache: far fewer tokens evaluated than sent.
    evaluated, sent = stats_lines[1].split(" prompt tokens evaluated")[0].rsplit(", ", 1)[1].split("/")
    assert int(evaluated) < int(sent) // 2


def test_bad_model_is_one_line_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_text("not a model")
    result = run("chat", "--model", str(bad), "-p", "hello")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "is not a GGUF model file" in result.stderr


def test_ctrl_c_stops_the_reply_not_the_program(model_path: Path) -> None:
    process = subprocess.Popen(
        llamadesk_command("chat", "--model", str(model_path), "--max-tokens", "2000", "--temp", "0"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin and process.stdout
    process.stdin.write("Write a very long story about a dragon.\n")
    process.stdin.flush()
    first = process.stdout.read(20)  # the reply has started
    assert first
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    process.stdin.write("What is the capital of France?\n")
    process.stdin.close()
    rest = process.stdout.read()
    assert process.stderr
    err = process.stderr.read()
    process.wait(timeout=120)
    assert process.returncode == 0, err
    replies = [block for block in (first + rest).split("\n\n") if block.strip()]
    assert len(replies) == 2, replies
    assert "Paris" in replies[1]
    assert "Traceback" not in err


def test_refused_chat_template_then_a_builtin_one(model_path: Path, tmp_path: Path) -> None:
    from tests.core.llm.test_templates import HOSTILE, with_template

    hostile = with_template(model_path, tmp_path, "loops", HOSTILE["nested_loops"][0])
    started = time.perf_counter()
    refused = run("chat", "--model", str(hostile), "--no-save", "-p", "What is the capital of France?")
    print(f"refused in {time.perf_counter() - started:.1f} s: {refused.stderr.strip()}")
    assert refused.returncode == 1
    assert "it took more than 2 s" in refused.stderr and "--chat-template" not in refused.stdout
    assert "ChatML (chatml)" in refused.stderr and "Traceback" not in refused.stderr
    chosen = run(
        "chat",
        "--model",
        str(hostile),
        "--chat-template",
        "ChatML",
        "--temp",
        "0",
        "--no-save",
        "-p",
        "What is the capital of France?",
    )
    assert chosen.returncode == 0, chosen.stderr
    assert "Paris" in chosen.stdout
    unknown = run("chat", "--model", str(hostile), "--chat-template", "vicuna", "-p", "hi")
    assert unknown.returncode == 2
    assert "invalid choice: 'vicuna'" in unknown.stderr and "'chatml', 'llama3'" in unknown.stderr


def test_empty_prompt_is_a_usage_error(model_path: Path) -> None:
    for blank in ("", "   ", "\n"):
        result = run("chat", "--model", str(model_path), "--no-save", "-p", blank)
        print(repr(blank), result.returncode, result.stderr.strip().splitlines()[-1])
        assert result.returncode == 2
        assert "the message is empty; give the text to send" in result.stderr
        assert result.stdout == ""
