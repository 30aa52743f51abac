"""Copies of a real model with one thing changed, for tests of what LlamaDesk does with bad models."""

from __future__ import annotations

import struct
from pathlib import Path

KEY = b"tokenizer.chat_template"


def with_template(model_path: Path, folder: Path, name: str, source: str) -> Path:
    """A copy of the model whose chat template is ``source``, padded with a Jinja comment to the original's
    byte length so no offset in the file moves. The model's file must have a chat template of its own (SmolLM2
    has; Gemma 3 270M, a base model, has none)."""
    data = bytearray(model_path.read_bytes())
    at = data.find(KEY)
    assert at >= 0, f"{model_path.name} has no chat template to replace"
    (kind, length) = struct.unpack_from("<IQ", data, at + len(KEY))
    assert kind == 8
    start = at + len(KEY) + 12
    new = source.encode()
    padding = length - len(new) - 4
    assert padding >= 0, "the hostile template must fit in the original's place"
    data[start : start + length] = new + b"{#" + b" " * padding + b"#}"
    path = folder / f"{name}.gguf"
    path.write_bytes(bytes(data))
    return path
