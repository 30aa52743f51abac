"""``llamadesk chat -p`` as a newcomer runs it: no --model (the starter), so the starter's own preset; the
person's --system and --temp still win over it, each for what it sets."""

from __future__ import annotations

from pathlib import Path

from app.core.history.store import HistoryStore
from app.core.modes import PRESETS, STARTER_CHAT, Mode
from tests.helpers.cli import run


def last_conversation_settings() -> dict[str, object]:
    store = HistoryStore()
    try:
        newest = store.list_conversations()[0]
        return dict(store.get_conversation(newest.id).settings)
    finally:
        store.close()


def test_the_starter_answers_with_its_own_preset_and_options_override_it(model_path: Path) -> None:
    question = "What is the capital of France?"
    result = run("chat", "--max-tokens", "40", "-p", question)
    print(f"\n{question} -> {result.stdout.strip()!r}")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    used = last_conversation_settings()
    assert used["system_prompt"] == STARTER_CHAT.system_prompt
    assert used["temperature"] == STARTER_CHAT.sampling.temperature

    own = run("chat", "--system", "Answer in one word.", "--max-tokens", "4", "-p", question)
    assert own.returncode == 0, own.stderr
    used = last_conversation_settings()
    assert used["system_prompt"] == "Answer in one word."
    assert used["temperature"] == STARTER_CHAT.sampling.temperature

    warmer = run("chat", "--temp", "0.5", "--max-tokens", "4", "-p", question)
    assert warmer.returncode == 0, warmer.stderr
    used = last_conversation_settings()
    assert used["system_prompt"] == STARTER_CHAT.system_prompt and used["temperature"] == 0.5
    assert STARTER_CHAT.system_prompt != PRESETS[Mode.CHAT].system_prompt
