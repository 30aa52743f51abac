"""The three ways to use the app, each a preset of system prompt and sampling that a user can edit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from app.core.limits import (
    OutOfRange,
    check_max_tokens,
    check_system_prompt,
    check_temperature,
    check_top_p,
)


class Mode(str, Enum):
    CHAT = "chat"
    SUMMARIZE = "summarize"
    CODE = "code"

    @property
    def label(self) -> str:
        return self.value.capitalize()


@dataclass(frozen=True)
class SamplingOptions:
    """How the next token is picked. temperature 0 means always the most likely token (repeatable)."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 1024
    seed: int | None = None  # None: a fresh random draw for every reply
    # OpenAI's penalties: subtracted from a token's logit per earlier use (frequency) or once it was used
    # (presence); 0 leaves them off, as the window does.
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0


@dataclass(frozen=True)
class ModePreset:
    mode: Mode
    system_prompt: str
    sampling: SamplingOptions


PRESETS: dict[Mode, ModePreset] = {
    Mode.CHAT: ModePreset(
        Mode.CHAT,
        "You are a helpful, friendly assistant. Answer clearly and concisely; say so when you are not sure.",
        SamplingOptions(temperature=0.7, top_p=0.95, repeat_penalty=1.1, max_tokens=1024),
    ),
    Mode.SUMMARIZE: ModePreset(
        Mode.SUMMARIZE,
        "You summarize documents faithfully. Keep the main points, names and numbers; add nothing that is not "
        "in the text. Use short paragraphs or bullet points.",
        # Low temperature: a summary should follow the text, not invent.
        SamplingOptions(temperature=0.2, top_p=0.9, repeat_penalty=1.1, max_tokens=1024),
    ),
    Mode.CODE: ModePreset(
        Mode.CODE,
        "You are an expert programmer. Answer with working code in fenced Markdown code blocks that name their "
        "language (```python ...```), followed by a short explanation. Keep explanations brief.",
        # Code is brittle: near-greedy sampling, and no repeat penalty, which would punish repeated syntax.
        SamplingOptions(temperature=0.1, top_p=0.95, repeat_penalty=1.0, max_tokens=2048),
    ),
}


# Presets of particular models (by catalog id), for a mode where a model needs other words than the mode's
# own. SmolLM2-135M, the starter, answered "What is the capital of France?" with "Bien sûr… your culinary
# needs" under the Chat preset: at 135M parameters it follows a worked example far better than an instruction,
# and any sampling lets it wander ("a week is 31 days" came at temperature 0.2, one run in eight). With one
# example in the system prompt and the most likely word every time it answers simple factual questions right,
# and the same way each run (tests/core/test_modes.py measures it). Settings can still raise the temperature.
STARTER_CHAT = ModePreset(
    Mode.CHAT,
    "You are a helpful assistant who answers in English with short, correct facts. Example: Q: What is the "
    "capital of Spain? A: The capital of Spain is Madrid.",
    SamplingOptions(temperature=0.0, top_p=0.95, repeat_penalty=1.1, max_tokens=512),
)
MODEL_PRESETS: dict[str, dict[Mode, ModePreset]] = {
    "smollm2-135m": {Mode.CHAT: STARTER_CHAT},
}


# What a user may change in a preset, and the check each value must pass (a sentence when it does not).
OVERRIDE_CHECKS: dict[str, Callable[[object], object]] = {
    "system_prompt": check_system_prompt,
    "temperature": check_temperature,
    "top_p": check_top_p,
    "max_tokens": check_max_tokens,
}
OVERRIDABLE = tuple(OVERRIDE_CHECKS)


def valid_overrides(overrides: object) -> tuple[dict[str, Any], list[str]]:
    """The overrides that pass their checks, and a sentence for each one that does not (or is unknown)."""
    if not isinstance(overrides, Mapping):
        return {}, [f"the changes to a mode must be a JSON object, not {overrides!r}"]
    kept: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in overrides.items():
        check = OVERRIDE_CHECKS.get(key)
        if check is None:
            problems.append(f"'{key}' cannot be changed (only {', '.join(OVERRIDABLE)} can)")
            continue
        try:
            kept[key] = check(value)
        except OutOfRange as exc:
            problems.append(str(exc).rstrip("."))
    return kept, problems


def preset_for(
    mode: Mode | str, overrides: Mapping[str, Any] | None = None, *, model_id: str | None = None
) -> ModePreset:
    """The preset for ``mode`` (the model's own when the catalog model ``model_id`` has one) with the user's
    changes on top; unknown, ill-typed or out-of-range values are ignored (settings.load has already said so,
    once)."""
    preset = MODEL_PRESETS.get(model_id or "", {}).get(Mode(mode), PRESETS[Mode(mode)])
    kept, _problems = valid_overrides(overrides or {})
    sampling = preset.sampling
    if "temperature" in kept:
        sampling = replace(sampling, temperature=float(kept["temperature"]))
    if "top_p" in kept:
        sampling = replace(sampling, top_p=float(kept["top_p"]))
    if "max_tokens" in kept:
        sampling = replace(sampling, max_tokens=int(kept["max_tokens"]))
    prompt = str(kept.get("system_prompt", "")).strip()
    return replace(preset, system_prompt=prompt or preset.system_prompt, sampling=sampling)
