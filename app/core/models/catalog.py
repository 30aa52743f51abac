"""The model menu: a curated catalog, each repository's real files from the Hub, and how each would run here.

The catalog (``resources/catalog.json``) holds what the Hub does not say in one place: parameters and the
dimensions that size the KV cache. The files, sizes and sha256 of each quantization come from the Hub's file
list with LFS metadata (``HfApi.model_info(files_metadata=True)``) and are cached, so the menu still shows
real sizes offline; a repository never fetched gets sizes estimated from bits per weight, marked as such.
Split GGUF files (``name-00001-of-00003.gguf``) are one model: one menu option, downloaded together.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from app.core.errors import UserError
from app.core.files import read_json, write_json_atomic
from app.core.models.fit import (
    ESTIMATED_QUANTS,
    QUALITY_FLOOR,
    FitAssessment,
    FitLabel,
    MemoryBudget,
    MemoryEstimate,
    ModelShape,
    QuantChoice,
    Recommendation,
    SpeedBasis,
    SpeedPrediction,
    SpeedRecord,
    assess_fit,
    effective_label,
    estimate_memory,
    estimated_file_size,
    offloaded_tokens_per_second,
    predict_speed,
    quant_rank,
    recommend_quant,
    speed_key,
)
from app.core.models.hardware import HardwareInfo
from app.core.paths import app_paths, resources_dir
from app.core.units import human_bytes

log = logging.getLogger(__name__)

LISTING_MAX_AGE_SECONDS = 24 * 3600
HUB_TIMEOUT_SECONDS = 15.0
SPLIT_PATTERN = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
QUANT_TOKEN = re.compile(r"^(I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|FP16|F32)$", re.IGNORECASE)
QUANT_ANYWHERE = re.compile(
    r"(?<![A-Za-z0-9])(I?Q\d(?:_[A-Z0-9]+)*|BF16|FP16|F16|F32)(?![A-Za-z0-9])", re.IGNORECASE
)


class HubUnavailableError(UserError):
    """The Hub cannot be asked: offline mode, no network, or the server is down."""


class HubAccessError(UserError):
    """The Hub answered, but no: a gated or missing repository or file."""


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


@dataclass(frozen=True)
class RepoListing:
    repo_id: str
    commit: str | None
    options: tuple[ModelFiles, ...]
    fetched_at: float
    gated: bool = False

    def option(self, quant: str) -> ModelFiles | None:
        wanted = quant.upper()
        for option in self.options:
            if option.quant.upper() == wanted:
                return option
        return None

    def option_for_file(self, filename: str) -> ModelFiles | None:
        for option in self.options:
            if any(f.path == filename or f.basename == filename for f in option.files):
                return option
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "fetched_at": self.fetched_at,
            "gated": self.gated,
            "files": [
                {"path": f.path, "size": f.size, "sha256": f.sha256}
                for option in self.options
                for f in option.files
            ],
        }

    @classmethod
    def from_dict(cls, repo_id: str, raw: dict[str, Any]) -> RepoListing:
        files = [RemoteFile(str(f["path"]), int(f["size"]), f.get("sha256")) for f in raw.get("files", [])]
        return cls(
            repo_id=repo_id,
            commit=raw.get("commit"),
            options=tuple(group_gguf_files(files)),
            fetched_at=float(raw.get("fetched_at", 0.0)),
            gated=bool(raw.get("gated", False)),
        )


# -- talking to the Hub --------------------------------------------------------------------------------------


def default_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def offline_mode() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


OFFLINE_SENTENCE = (
    "Downloads are switched off because HF_HUB_OFFLINE is set, so the Hugging Face Hub was not asked. "
    "Models already on this computer still work; unset HF_HUB_OFFLINE to download new ones."
)


def hub_error(
    exc: BaseException, repo_id: str, endpoint: str | None = None, filename: str = ""
) -> UserError | None:
    """The sentence for a failed Hub request, or None when the failure is a bug rather than the world."""
    import httpx2
    from huggingface_hub import get_token
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = (endpoint or default_endpoint()).rstrip("/")
    if isinstance(exc, OfflineModeIsEnabled):
        return HubUnavailableError(OFFLINE_SENTENCE)
    if isinstance(exc, GatedRepoError):
        page = f"{endpoint}/{repo_id}"
        has_token = get_token() is not None
        status = exc.response.status_code if exc.response is not None else None
        if has_token and status == 403:
            return HubAccessError(
                f"Your Hugging Face token does not have access to {repo_id} yet. Accept the model's terms at "
                f"{page} (approval can take a while), then try again."
            )
        return HubAccessError(
            f"{repo_id} is a gated repository: its authors ask each person to accept their terms first. Accept "
            f"them at {page}, then give LlamaDesk a Hugging Face access token, either in the HF_TOKEN "
            "environment variable or by running `hf auth login`, and try again."
        )
    if isinstance(exc, RepositoryNotFoundError):
        return HubAccessError(
            f"No model repository named {repo_id} was found on the Hugging Face Hub (or it is private). Check "
            "the name; for a private repository set HF_TOKEN or run `hf auth login`."
        )
    if isinstance(exc, RevisionNotFoundError):
        return HubAccessError(f"The requested version of {repo_id} no longer exists on the Hub. Try again.")
    if isinstance(exc, RemoteEntryNotFoundError):
        return HubAccessError(
            f"{repo_id} has no file named {filename or 'like that'} (any more). Choose one of the files it lists."
        )
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "an"
        return HubUnavailableError(
            f"The Hugging Face Hub answered with error {status} for {repo_id}. It may be busy; try again in a "
            "few minutes. Models already on this computer still work."
        )
    if isinstance(exc, (httpx2.TransportError, OSError)):
        reason = str(exc) or type(exc).__name__
        return HubUnavailableError(
            f"The Hugging Face Hub at {endpoint} cannot be reached ({reason}). Check the internet connection "
            "(or proxy) and try again; models already on this computer still work."
        )
    return None


def _hf_api(endpoint: str | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint or default_endpoint())


def fetch_listing(
    repo_id: str, *, endpoint: str | None = None, timeout: float = HUB_TIMEOUT_SECONDS
) -> RepoListing:
    """A repository's GGUF files with sizes and sha256, straight from the Hub. Raises a UserError."""
    if offline_mode():
        raise HubUnavailableError(OFFLINE_SENTENCE)
    try:
        info = _hf_api(endpoint).model_info(repo_id, files_metadata=True, timeout=timeout)
    except Exception as exc:
        error = hub_error(exc, repo_id, endpoint)
        if error is None:
            raise
        raise error from exc
    files = [
        RemoteFile(
            path=sibling.rfilename,
            size=int(sibling.lfs.size if sibling.lfs is not None else (sibling.size or 0)),
            sha256=sibling.lfs.sha256 if sibling.lfs is not None else None,
        )
        for sibling in info.siblings or []
    ]
    listing = RepoListing(
        repo_id=repo_id,
        commit=info.sha,
        options=tuple(group_gguf_files(files)),
        fetched_at=time.time(),
        gated=bool(info.gated),
    )
    _store_listing(listing)
    return listing


def _listings_file() -> Path:
    return app_paths().cache_dir / "hub_listings.json"


# Listings are fetched a few at a time; each read-modify-write of the cache file must not lose another's entry.
_listings_lock = threading.Lock()


def _store_listing(listing: RepoListing) -> None:
    path = _listings_file()
    with _listings_lock:
        data = read_json(path)
        if not isinstance(data, dict):
            data = {}
        data[listing.repo_id] = listing.to_dict()
        try:
            write_json_atomic(path, data)
        except OSError:
            log.warning("Could not cache the file list of %s", listing.repo_id, exc_info=True)


def cached_listing(repo_id: str) -> RepoListing | None:
    data = read_json(_listings_file())
    if not isinstance(data, dict) or not isinstance(data.get(repo_id), dict):
        return None
    try:
        return RepoListing.from_dict(repo_id, data[repo_id])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class ListingResult:
    listings: dict[str, RepoListing] = field(default_factory=dict)
    problem: str = ""  # one sentence when some repositories could not be asked


def load_listings(
    repo_ids: Sequence[str],
    *,
    refresh: bool = False,
    fetch: bool = True,
    endpoint: str | None = None,
    max_age: float = LISTING_MAX_AGE_SECONDS,
) -> ListingResult:
    """File lists for several repositories: cached ones when fresh, else from the Hub (a few at a time).
    When the Hub cannot be reached the cached lists (however old) are used and the sentence says so."""
    result = ListingResult()
    to_fetch: list[str] = []
    now = time.time()
    for repo_id in repo_ids:
        cached = cached_listing(repo_id)
        if cached is not None:
            result.listings[repo_id] = cached
        if fetch and (refresh or cached is None or now - cached.fetched_at > max_age):
            to_fetch.append(repo_id)
    if not to_fetch:
        return result
    if offline_mode():
        result.problem = OFFLINE_SENTENCE
        return result

    def one(repo_id: str) -> RepoListing | UserError:
        try:
            return fetch_listing(repo_id, endpoint=endpoint)
        except UserError as exc:
            return exc

    def take(repo_id: str, outcome: RepoListing | UserError) -> None:
        if isinstance(outcome, RepoListing):
            result.listings[repo_id] = outcome
        elif not result.problem:
            result.problem = f"{outcome} Sizes shown for repositories not reached are estimates."

    # One first: when the Hub cannot be reached at all, asking for every other repository only adds waiting.
    first = one(to_fetch[0])
    take(to_fetch[0], first)
    if isinstance(first, HubUnavailableError):
        return result
    with ThreadPoolExecutor(max_workers=4) as pool:
        for repo_id, outcome in zip(to_fetch[1:], pool.map(one, to_fetch[1:]), strict=True):
            take(repo_id, outcome)
    return result


@dataclass(frozen=True)
class HubModel:
    repo_id: str
    downloads: int
    likes: int
    gated: bool


def search_hub(text: str, *, endpoint: str | None = None, limit: int = 20) -> list[HubModel]:
    """GGUF repositories on the Hub matching the text, most downloaded first."""
    if offline_mode():
        raise HubUnavailableError(OFFLINE_SENTENCE)
    try:
        found = list(
            _hf_api(endpoint).list_models(search=text.strip(), filter="gguf", sort="downloads", limit=limit)
        )
    except Exception as exc:
        error = hub_error(exc, text, endpoint)
        if error is None:
            raise
        raise error from exc
    return [
        HubModel(
            repo_id=model.id,
            downloads=int(model.downloads or 0),
            likes=int(model.likes or 0),
            gated=bool(model.gated),
        )
        for model in found
    ]


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


def installed_quants(repo_id: str) -> dict[str, Path]:
    """Quantizations of a repository already in the models folder (found by file name, works offline)."""
    folder = app_paths().models_dir / repo_folder_name(repo_id)
    found: dict[str, Path] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.gguf")):
            split = SPLIT_PATTERN.match(path.name)
            if split and int(split.group("index")) != 1:
                continue
            quant = quant_from_filename(path.name)
            if quant is not None:
                found.setdefault(quant, path)
    return found


# -- the menu ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MenuOption:
    files: ModelFiles
    memory: MemoryEstimate
    fit: FitAssessment
    label: FitLabel  # the fit, downgraded to "tight" when it would crawl
    speed: SpeedPrediction
    installed: Path | None = None

    @property
    def quant(self) -> str:
        return self.files.quant

    @property
    def size_text(self) -> str:
        return ("~" if self.files.estimated else "") + human_bytes(self.files.size)

    @property
    def reason(self) -> str:
        if self.label is not self.fit.label and self.speed.tokens_per_second is not None:
            return f"fits in memory, but about {self.speed.describe()} is slow"
        return self.fit.reason


@dataclass(frozen=True)
class MenuRow:
    entry: CatalogEntry
    options: tuple[MenuOption, ...]
    recommendation: Recommendation
    context_size: int
    sizes_estimated: bool

    def option(self, quant: str | None) -> MenuOption | None:
        for option in self.options:
            if quant is not None and option.quant.upper() == quant.upper():
                return option
        return None

    @property
    def recommended(self) -> MenuOption | None:
        return self.option(self.recommendation.quant)

    @property
    def headline(self) -> MenuOption | None:
        """The option the menu shows first: the recommended one, else the quality floor, else the smallest."""
        for option in (self.recommended, self.option(QUALITY_FLOOR)):
            if option is not None:
                return option
        return min(self.options, key=lambda o: o.files.size) if self.options else None

    @property
    def label(self) -> FitLabel:
        headline = self.headline
        return headline.label if headline is not None else FitLabel.UNKNOWN

    def as_dict(self) -> dict[str, Any]:
        def option_dict(option: MenuOption) -> dict[str, Any]:
            return {
                "quant": option.quant,
                "size": option.files.size,
                "size_estimated": option.files.estimated,
                "files": [f.path for f in option.files.files],
                "memory_needed": option.fit.needed,
                "fit": option.label.value,
                "fit_reason": option.reason,
                "gpu_layers": option.fit.gpu_layers,
                "tokens_per_second": option.speed.tokens_per_second,
                "speed_basis": option.speed.basis.value,
                "installed": str(option.installed) if option.installed else None,
            }

        return {
            "id": self.entry.id,
            "name": self.entry.name,
            "repo_id": self.entry.repo_id,
            "parameters": self.entry.parameters,
            "license": self.entry.license,
            "modes": list(self.entry.modes),
            "context_size": self.context_size,
            "fit": self.label.value,
            "recommended_quant": self.recommendation.quant,
            "advice": self.recommendation.advice,
            "sizes_estimated": self.sizes_estimated,
            "options": [option_dict(option) for option in self.options],
        }


def memory_budget(hardware: HardwareInfo, reclaimable: int = 0) -> MemoryBudget:
    return MemoryBudget(
        available_ram=hardware.available_ram,
        total_ram=hardware.total_ram,
        vram_free=hardware.vram_free,
        gpu_offload=bool(hardware.gpu_offload),
        unified_memory=hardware.unified_memory,
        reclaimable=reclaimable,
    )


def menu_row(
    entry: CatalogEntry,
    hardware: HardwareInfo,
    context_size: int,
    *,
    listing: RepoListing | None = None,
    speeds: Sequence[SpeedRecord] = (),
    reclaimable: int = 0,
) -> MenuRow:
    """How every quantization of one model would run here, at this context size."""
    context = min(context_size, entry.native_context) if context_size > 0 else entry.native_context
    budget = memory_budget(hardware, reclaimable)
    files = list(listing.options) if listing is not None and listing.options else estimated_files(entry)
    options = []
    for model_files in files:
        memory = estimate_memory(model_files.size, entry.shape, context)
        fit = assess_fit(memory, entry.n_layers, budget)
        key = speed_key(model_files.first_file) if model_files.first_file else None
        if fit.gpu_layers != 0 and hardware.memory_bandwidth:
            speed = SpeedPrediction(
                offloaded_tokens_per_second(
                    model_files.size, entry.n_layers, fit.gpu_layers, hardware.memory_bandwidth
                ),
                SpeedBasis.ESTIMATED,
            )
        else:
            speed = predict_speed(model_files.size, hardware.memory_bandwidth, speeds, key)
        options.append(
            MenuOption(
                files=model_files,
                memory=memory,
                fit=fit,
                label=effective_label(fit, speed),
                speed=speed,
                installed=installed_path(entry.repo_id, model_files),
            )
        )
    options.sort(key=lambda o: (quant_rank(o.quant), o.files.size))
    recommendation = recommend_quant([QuantChoice(o.quant, o.fit, o.speed) for o in options])
    return MenuRow(
        entry=entry,
        options=tuple(options),
        recommendation=recommendation,
        context_size=context,
        sizes_estimated=listing is None or not listing.options,
    )


def build_menu(
    hardware: HardwareInfo,
    context_size: int,
    *,
    entries: Sequence[CatalogEntry] | None = None,
    listings: dict[str, RepoListing] | None = None,
    speeds: Sequence[SpeedRecord] = (),
    reclaimable: int = 0,
) -> list[MenuRow]:
    """The whole menu for this machine, in catalog order. Call again when a model is loaded (pass what it
    holds as ``reclaimable``) or the context size changes: the labels follow."""
    listings = listings or {}
    return [
        menu_row(
            entry,
            hardware,
            context_size,
            listing=listings.get(entry.repo_id),
            speeds=speeds,
            reclaimable=reclaimable,
        )
        for entry in (entries if entries is not None else load_catalog())
    ]
