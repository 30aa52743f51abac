from __future__ import annotations

import math

import pytest

from app.core import limits
from app.core.modes import PRESETS, STARTER_CHAT, Mode, preset_for, valid_overrides


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("temperature", math.nan),
        ("temperature", math.inf),
        ("temperature", -0.1),
        ("temperature", 5.5),
        ("temperature", True),
        ("top_p", 0),
        ("top_p", 1.5),
        ("top_p", math.nan),
        ("max_tokens", 0),
        ("max_tokens", -3),
        ("max_tokens", 131_073),
        ("max_tokens", 2.5),
        ("system_prompt", 7),
        ("system_prompt", "x" * (limits.MAX_SYSTEM_PROMPT_CHARS + 1)),
    ],
)
def test_out_of_range_overrides_are_ignored_with_a_sentence(key: str, value: object) -> None:
    kept, problems = valid_overrides({key: value})
    assert kept == {}
    assert len(problems) == 1 and problems[0][0].isupper()
    preset = preset_for(Mode.CHAT, {key: value})
    assert preset == preset_for(Mode.CHAT)


@pytest.mark.parametrize("overrides", [5, "chat", [1, 2], None])
def test_overrides_that_are_not_an_object_leave_the_preset(overrides: object) -> None:
    assert preset_for(Mode.CHAT, overrides) == preset_for(Mode.CHAT)  # type: ignore[arg-type]


def test_boundaries_are_accepted() -> None:
    kept, problems = valid_overrides({"temperature": 0, "top_p": 1, "max_tokens": 131_072})
    assert problems == []
    preset = preset_for(Mode.CODE, kept)
    assert (preset.sampling.temperature, preset.sampling.top_p, preset.sampling.max_tokens) == (
        0.0,
        1.0,
        131_072,
    )


def test_the_starter_has_its_own_chat_preset_and_the_persons_changes_still_win() -> None:
    starter = preset_for(Mode.CHAT, model_id="smollm2-135m")
    assert starter == STARTER_CHAT
    assert preset_for(Mode.CHAT, model_id="llama-3.2-3b") == PRESETS[Mode.CHAT]  # other models: the mode's
    assert preset_for(Mode.CODE, model_id="smollm2-135m") == PRESETS[Mode.CODE]  # other modes: the mode's
    mine = preset_for(Mode.CHAT, {"system_prompt": "Be terse.", "temperature": 0}, model_id="smollm2-135m")
    assert mine.system_prompt == "Be terse." and mine.sampling.temperature == 0.0
    assert mine.sampling.top_p == STARTER_CHAT.sampling.top_p
