"""Typed settings stored as JSON, with defaults merged in and a broken file set aside instead of lost."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.files import write_json_atomic
from app.core.paths import app_paths

log = logging.getLogger(__name__)

THEMES = ("system", "light", "dark")


@dataclass
class Settings:
    """Everything a user can change. New fields need only a default here."""

    context_size: int = 4096
    threads: int = 0  # 0: one per physical core
    gpu_layers: int = -1  # -1: all layers when this build can offload, ignored otherwise
    mode: str = "chat"
    # Per mode ("chat", "summarize", "code"): the user's changes to its preset, any of
    # "system_prompt", "temperature", "top_p", "max_tokens". Missing keys keep the preset's value.
    mode_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    theme: str = "system"
    last_model: str = ""
    imported_models: list[str] = field(default_factory=list)
    window_geometry: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # keys from a newer version, kept untouched


@dataclass
class LoadedSettings:
    settings: Settings
    warnings: list[str]


def _matches(default: Any, value: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, dict):
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return isinstance(value, type(default))


def from_dict(raw: dict[str, Any]) -> tuple[Settings, list[str]]:
    """Build settings from a decoded JSON object; a wrong-typed value falls back to its default."""
    defaults = Settings()
    values: dict[str, Any] = {}
    warnings: list[str] = []
    known = {f.name for f in dataclasses.fields(Settings)} - {"extra"}
    for name in known:
        if name not in raw:
            continue
        default = getattr(defaults, name)
        value = raw[name]
        if _matches(default, value):
            values[name] = float(value) if isinstance(default, float) else value
        else:
            warnings.append(f"The setting '{name}' had an invalid value ({value!r}); the default is used.")
    if values.get("theme", "system") not in THEMES:
        warnings.append(f"The theme '{values['theme']}' is unknown; following the system instead.")
        values["theme"] = "system"
    extra = dict(raw.get("extra", {})) if isinstance(raw.get("extra"), dict) else {}
    extra.update({k: v for k, v in raw.items() if k not in known and k != "extra"})
    return Settings(**values, extra=extra), warnings


def to_dict(settings: Settings) -> dict[str, Any]:
    data = dataclasses.asdict(settings)
    extra = data.pop("extra")
    return {**extra, **data}


def load(path: Path | None = None) -> LoadedSettings:
    """Read settings; a missing file gives defaults, an unreadable one is moved aside and reported."""
    path = path or app_paths().settings_file
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LoadedSettings(Settings(), [])
    except OSError as exc:
        message = f"The settings file {path} could not be read ({exc.strerror}); defaults are used for now."
        log.warning(message)
        return LoadedSettings(Settings(), [message])
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
    except ValueError:
        aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        message = f"The settings file was damaged and has been replaced by the defaults; the old file is kept at {aside}."
        log.warning(message)
        return LoadedSettings(Settings(), [message])
    settings, warnings = from_dict(raw)
    for warning in warnings:
        log.warning(warning)
    return LoadedSettings(settings, warnings)


def save(settings: Settings, path: Path | None = None) -> None:
    """Write atomically: a crash mid-write leaves the previous file, never half of one."""
    write_json_atomic(path or app_paths().settings_file, to_dict(settings))
