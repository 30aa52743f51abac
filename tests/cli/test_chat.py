"""``llamadesk chat`` as a person runs it: a real process, the real test model. What it printed is checked
against what it saved, never against the words a tiny model is expected to say."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from app.core.history.records import Message
from app.core.history.store import HistoryStore
from tests.helpers.cli import llamadesk_command, run
from tests.helpers.gguf import with_template


def saved_turns() -> list[Message]:
    """The turns of the one conversation the runs of a test saved, in order."""
    with HistoryStore() as store:
        [conversation] = store.list_conversations()
        return store.messages(conversation.id)


def printed_in_order(stdout: str, replies: list[Message]) -> bool:
    """Whether each saved reply was printed, one after the other. A reply the repetition guard cut is saved
    up to its first telling: a beginning of what was printed."""
    at = 0
    for reply in replies:
        found = stdout.find(reply.content, at)
        if not reply.content or found < 0:
            return False
        at = found + len(reply.content)
    return True


def test_one_shot_prompt(model_path: Path) -> None:
    result = run("chat", "--model", str(model_path), "--temp", "0", "-p", "What is the capital of France?")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    user, reply = saved_turns()
    assert (user.content, reply.role, reply.state) == (
        "What is the capital of France?",
        "assistant",
        "complete",
    )
    assert result.stdout.strip() and printed_in_order(result.stdout, [reply])


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
    turns = saved_turns()
    assert [(m.role, m.state) for m in turns] == [("user", "complete"), ("assistant", "complete")] * 2
    assert printed_in_order(result.stdout, turns[1::2])
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
    assert "Traceback" not in err
    turns = saved_turns()
    assert [m.role for m in turns] == ["user", "assistant"] * 2
    assert turns[1].state == "stopped" and turns[3].state == "complete"
    assert printed_in_order(first + rest, [turns[1], turns[3]])


def test_refused_chat_template_then_a_builtin_one(smollm2_path: Path, tmp_path: Path) -> None:
    """On SmolLM2 whichever test model is chosen: the hostile template is written over the file's own, and
    Gemma's file has none to overwrite."""
    from tests.core.llm.test_templates import HOSTILE

    hostile = with_template(smollm2_path, tmp_path, "loops", HOSTILE["nested_loops"][0])
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
    assert chosen.stdout.strip() and "Traceback" not in chosen.stderr
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
