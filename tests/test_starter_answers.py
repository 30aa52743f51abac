"""The starter's right answers: SmolLM2-135M-Instruct with its own Chat preset (app/core/modes.py
STARTER_CHAT), as a newcomer meets it in the terminal (README "Run it"), on the welcome card, and asked again
and again.

The one module that reads what a model says. Everywhere else the test model (switchable with
LLAMADESK_TEST_MODEL) is held to what the app does with a reply; here SmolLM2 is always used, whatever that
variable says, because the starter's promise is that its answers to simple questions are right. Any answer a
careful reader accepts passes ("Paris", "paris", "Paris, France"; "7", "seven"): a tiny model's wording
changes with the CPU's instruction set and llama.cpp's version, its facts should not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QThreadPool
from pytestqt.qtbot import QtBot

from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine
from app.core.llm.load_options import LoadOptions
from app.core.modes import PRESETS, STARTER_CHAT, Mode, ModePreset
from app.ui.welcome import STARTER_PROMPTS
from tests.helpers.cli import run
from tests.ui.test_welcome import open_as_newcomer

# Simple factual questions a newcomer asks first, and the words of which a right answer contains one.
FACTS = {
    "What is the capital of France?": ("paris",),
    "What is the capital of Japan?": ("tokyo",),
    "How many days are in a week?": ("seven", "7"),
    "What color is the sky?": ("blue",),
    "What is the largest planet in our solar system?": ("jupiter",),
}
RUNS = 3


def right(question: str, answer: str) -> bool:
    """Whether ``answer`` names the fact, as a whole word in any case ("7" is not found in "17")."""
    return any(re.search(rf"\b{re.escape(word)}\b", answer, re.IGNORECASE) for word in FACTS[question])


def test_every_suggested_question_has_its_right_answers() -> None:
    assert set(STARTER_PROMPTS) <= set(FACTS)


@pytest.fixture(scope="module")
def starter_engine(smollm2_path: Path) -> Iterator[Engine]:
    engine = Engine()
    engine.load(smollm2_path, LoadOptions(context_size=2048))
    yield engine
    engine.unload()


def ask(engine: Engine, preset: ModePreset, question: str) -> str:
    messages: list[ChatMessage] = [
        {"role": "system", "content": preset.system_prompt},
        {"role": "user", "content": question},
    ]
    return engine.chat(messages, replace(preset.sampling, max_tokens=40)).collect().strip()


@pytest.mark.slow
def test_the_starter_answers_simple_questions_right_on_every_run(starter_engine: Engine) -> None:
    """Each question several times, as a person would ask it again; every answer must be right. The Chat
    preset is asked once each, for comparison."""
    before = 0
    for question in FACTS:
        answer = ask(starter_engine, PRESETS[Mode.CHAT], question)
        before += right(question, answer)
        print(f"\nthe Chat preset: {question} -> {answer!r}")
    for question in FACTS:
        answers = [ask(starter_engine, STARTER_CHAT, question) for _run in range(RUNS)]
        print(f"\nthe starter's preset: {question} -> {answers!r}")
        assert all(right(question, answer) for answer in answers), answers
    total = len(FACTS) * RUNS
    print(f"\nthe Chat preset: {before}/{len(FACTS)} right; the starter's: {total}/{total}")


def test_chat_without_a_model_answers_right_with_the_starter(smollm2_path: Path) -> None:
    """``llamadesk chat -p`` with no --model, as the README's first command runs it."""
    question = STARTER_PROMPTS[0]
    result = run("chat", "--max-tokens", "40", "-p", question)
    print(f"\n{question} -> {result.stdout.strip()!r}")
    assert result.returncode == 0, result.stderr
    assert right(question, result.stdout)


@pytest.mark.gui
def test_the_welcome_cards_first_question_is_answered_right(qtbot: QtBot, smollm2_path: Path) -> None:
    window = open_as_newcomer(qtbot, smollm2_path)
    try:
        card = window.welcome.card
        with qtbot.waitSignal(window.bridge.reply_finished, timeout=60_000):
            qtbot.mouseClick(card.prompt_buttons[0], Qt.MouseButton.LeftButton)
        assert window.conversation_id is not None
        question, answer = (m.content for m in window.store.messages(window.conversation_id))
        print(f"\n{question} -> {answer!r}")
        assert question == STARTER_PROMPTS[0] and right(question, answer)
    finally:
        window.close()
        # The window's jobs on Qt's shared pool (the menu's pick) end with this test, as in tests/ui.
        QThreadPool.globalInstance().waitForDone(30_000)
