"""``llamadesk chat -p`` as a newcomer runs it: no --model (the starter, SmolLM2, whichever test model is
chosen), so the starter's own preset; the person's --system and --temp still win over it, each for what it
sets. Whether its answers are right is tests/test_starter_answers.py's."""

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


def test_the_starter_answers_with_its_own_preset_and_options_override_it(smollm2_path: Path) -> None:
    question = "What is the capital of France?"
    result = run("chat", "--max-tokens", "4", "-p", question)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    with HistoryStore() as store:
        assert store.get_conversation(store.list_conversations()[0].id).model == str(smollm2_path.resolve())
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
