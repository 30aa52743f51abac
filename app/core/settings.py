"""Typed settings stored as JSON, with defaults merged in and a broken file set aside instead of lost."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.core.files import write_json_atomic
from app.core.limits import (
    OutOfRange,
    check_context_size,
    check_gpu_layers,
    check_saved_states_mb,
    check_threads,
)
from app.core.llm.load_options import check_parallel
from app.core.llm.remote_config import (
    DEFAULT_CONTEXT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_WAIT_SECONDS,
    RemoteEngineError,
    check_base_url,
    check_read_timeout,
    check_wait_seconds,
)
from app.core.llm.saved_state_store import DefaultDiskBudget
from app.core.llm.templates import BUILTIN_TEMPLATES
from app.core.modes import Mode, valid_overrides
from app.core.paths import app_paths

log = logging.getLogger(__name__)

THEMES = ("system", "light", "dark")
ENGINES = ("local", "server")
SECRET_SETTINGS = frozenset({"remote_api_key"})  # never written to a log, even when invalid


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
    # Model file -> the built-in chat template chosen for it, when its own was refused.
    chat_templates: dict[str, str] = field(default_factory=dict)
    window_geometry: str = ""
    # The conversation open when the window last closed, shown again at start; 0: none (a new chat).
    last_conversation_id: int = 0
    saved_states_mb: int = 4096  # disk space for conversations' saved states (app.core.llm.saved_state_store)
    # The window's switch: other apps on this computer use the loaded model over the API, on 127.0.0.1.
    serve_enabled: bool = False
    serve_port: int = 8080
    # Requests answered together while serving, each with context_size cells of its own; 0: automatic, as many
    # as the memory free when the model loads allows (app.core.llm.load_options). Not serving: one at a time.
    serve_parallel: int = 0
    serve_save_history: bool = False  # each served chat request kept as a conversation
    # Web apps the person trusts to call the server from a browser, as exact origins (https://chat.example.com);
    # any other web page is refused.
    serve_allowed_origins: list[str] = field(default_factory=list)
    # Settings -> Engine: "local" (llama.cpp on this computer) or "server" (an OpenAI-compatible one).
    engine: str = "local"
    remote_url: str = ""  # the server's OpenAI base URL, e.g. http://gpu-box:8000/v1
    remote_api_key: str = ""  # sent only to remote_url; this file is readable by its owner only (0600)
    remote_model: str = ""  # "" : the first model the server lists
    remote_context_size: int = DEFAULT_CONTEXT  # used when the server does not say its own
    remote_read_timeout: int = DEFAULT_READ_TIMEOUT  # seconds without a byte before a reply is given up
    remote_wait_seconds: int = DEFAULT_WAIT_SECONDS  # for the first token, then between them; not keep-alives
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


def _check_mode(value: object) -> str:
    if value not in {mode.value for mode in Mode}:
        raise OutOfRange(f"The mode must be one of {', '.join(mode.value for mode in Mode)}, not {value!r}.")
    return str(value)


def _check_theme(value: object) -> str:
    if value not in THEMES:
        raise OutOfRange(f"The theme must be one of {', '.join(THEMES)}, not {value!r}.")
    return str(value)


def _check_port(value: object) -> int:
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise OutOfRange(f"The port must be a whole number from 1 to 65535, not {value!r}.")
    return value


def _check_engine(value: object) -> str:
    if value not in ENGINES:
        raise OutOfRange(f"The engine must be one of {', '.join(ENGINES)}, not {value!r}.")
    return str(value)


def _check_remote_url(value: str) -> str:
    try:
        return check_base_url(value) if value else value
    except RemoteEngineError as exc:
        raise OutOfRange(str(exc)) from None


def _check_remote_read_timeout(value: int) -> int:
    try:
        return check_read_timeout(value)
    except RemoteEngineError as exc:
        raise OutOfRange(str(exc)) from None


def _check_remote_wait_seconds(value: int) -> int:
    try:
        return check_wait_seconds(value)
    except RemoteEngineError as exc:
        raise OutOfRange(str(exc)) from None


def _check_model_list(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise OutOfRange("The list of imported models must hold only file paths.")
    return [str(item) for item in value]


def _check_chat_templates(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(name in BUILTIN_TEMPLATES for name in value.values()):
        raise OutOfRange(
            f"The chat templates chosen for models must each be one of {', '.join(BUILTIN_TEMPLATES)}."
        )
    return {str(path): str(name) for path, name in value.items()}


ORIGIN_FORM = "scheme://host[:port], such as https://chat.example.com"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def check_web_origin(text: str) -> str:
    """A web app's origin written as a browser sends it in ``Origin`` (lower case, no default port), or
    OutOfRange with a sentence."""
    shown = text.strip()
    wrong = OutOfRange(f"{shown!r} is not a web app's origin; write it as {ORIGIN_FORM}, without a path.")
    # A trailing slash is how browsers show an origin in the address bar: it is no path.
    match = re.fullmatch(r"([a-z][a-z0-9+.-]*)://([^/?#@\s]+)/?", shown, flags=re.IGNORECASE)
    if match is None:
        raise wrong
    parts = urlsplit(f"{match[1]}://{match[2]}")
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        raise wrong from None
    if not parts.hostname:
        raise wrong
    scheme = parts.scheme.lower()
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def check_web_origins(value: object) -> list[str]:
    """Each origin checked and written as a browser sends it; the first one that is not an origin refused."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise OutOfRange(f"The web apps allowed must be a list of origins, each {ORIGIN_FORM}.")
    return list(dict.fromkeys(check_web_origin(item) for item in value))


def split_web_origins(text: str) -> tuple[list[str], list[str]]:
    """Origins typed one per line or separated by commas: those that are origins, and a sentence for each one
    that is not."""
    origins: list[str] = []
    problems: list[str] = []
    for item in re.split(r"[,\s]+", text):
        if not item:
            continue
        try:
            origins.append(check_web_origin(item))
        except OutOfRange as exc:
            problems.append(str(exc))
    return list(dict.fromkeys(origins)), problems


# Beyond its type, what each setting's value must satisfy; a value that fails falls back to the default.
VALUE_CHECKS: dict[str, Callable[[Any], object]] = {
    "context_size": check_context_size,
    "threads": check_threads,
    "gpu_layers": check_gpu_layers,
    "mode": _check_mode,
    "theme": _check_theme,
    "imported_models": _check_model_list,
    "chat_templates": _check_chat_templates,
    "engine": _check_engine,
    "remote_url": _check_remote_url,
    "remote_context_size": check_context_size,
    "remote_read_timeout": _check_remote_read_timeout,
    "remote_wait_seconds": _check_remote_wait_seconds,
    "saved_states_mb": check_saved_states_mb,
    "serve_port": _check_port,
    "serve_parallel": check_parallel,  # 0: automatic
    "serve_allowed_origins": check_web_origins,
}


def _mode_overrides(value: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each mode's valid changes; an unknown mode or a bad value is dropped with one warning per mode."""
    kept: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for mode, overrides in value.items():
        if mode not in {m.value for m in Mode}:
            warnings.append(f"The setting 'mode_overrides' names an unknown mode ({mode!r}); it is ignored.")
            continue
        valid, problems = valid_overrides(overrides)
        if problems:
            warnings.append(
                f"The changes to the {mode} mode in the setting 'mode_overrides' were partly invalid "
                f"({'; '.join(problems)}); the preset's values are used instead."
            )
        if valid:
            kept[mode] = valid
    return kept, warnings


# Settings renamed since a file may have been written: the old name's value is read under the new name.
RENAMED_SETTINGS = {"state_cache_mb": "saved_states_mb"}


def from_dict(raw: dict[str, Any]) -> tuple[Settings, list[str]]:
    """Build settings from a decoded JSON object. Each value is checked for its type and its range (nested
    values too); one that fails falls back to its default, with one warning each."""
    defaults = Settings()
    values: dict[str, Any] = {}
    warnings: list[str] = []
    raw = dict(raw)
    for old_name, new_name in RENAMED_SETTINGS.items():
        if old_name in raw:
            raw.setdefault(new_name, raw.pop(old_name))
    known = [f.name for f in dataclasses.fields(Settings) if f.name != "extra"]
    for name in known:
        if name not in raw:
            continue
        default = getattr(defaults, name)
        value = raw[name]
        if not _matches(default, value):
            shown = "hidden" if name in SECRET_SETTINGS else f"{value!r:.80}"
            warnings.append(f"The setting '{name}' had an invalid value ({shown}); the default is used.")
            continue
        if name == "mode_overrides":
            values[name], nested_warnings = _mode_overrides(value)
            warnings.extend(nested_warnings)
            continue
        try:
            checked = VALUE_CHECKS[name](value) if name in VALUE_CHECKS else value
        except OutOfRange as exc:
            warnings.append(
                f"The setting '{name}' was out of range: {exc} The default ({default!r}) is used."
            )
            continue
        values[name] = float(checked) if isinstance(default, float) else checked  # type: ignore[arg-type]
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


def saved_states_budget() -> int:
    """Bytes of disk the saved states may take (the ``saved_states_mb`` setting, read now)."""
    return load().settings.saved_states_mb * 1024 * 1024


# The llm package does not read the settings: the app's saved states take their disk budget from here, read at
# each write, so a change in the settings dialog applies to the next state saved.
DefaultDiskBudget.use(saved_states_budget)
