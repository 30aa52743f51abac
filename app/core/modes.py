"""The three ways to use the app, each a preset of system prompt and sampling that a user can edit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any


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
    seed: int | None = None


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


OVERRIDABLE = ("system_prompt", "temperature", "top_p", "max_tokens")


def preset_for(mode: Mode | str, overrides: Mapping[str, Any] | None = None) -> ModePreset:
    """The preset for ``mode`` with the user's changes on top; unknown or ill-typed values are ignored."""
    preset = PRESETS[Mode(mode)]
    overrides = overrides or {}
    sampling = preset.sampling
    temperature = _number(overrides.get("temperature"))
    if temperature is not None and temperature >= 0:
        sampling = replace(sampling, temperature=temperature)
    top_p = _number(overrides.get("top_p"))
    if top_p is not None and 0 < top_p <= 1:
        sampling = replace(sampling, top_p=top_p)
    max_tokens = overrides.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
        sampling = replace(sampling, max_tokens=max_tokens)
    prompt = overrides.get("system_prompt")
    system_prompt = prompt.strip() if isinstance(prompt, str) and prompt.strip() else preset.system_prompt
    return replace(preset, system_prompt=system_prompt, sampling=sampling)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
