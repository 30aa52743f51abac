"""The Hugging Face Hub: which GGUF files a repository has (with sizes and sha256), cached; search; and the
sentence for every way asking it can fail.

The files, sizes and sha256 of each quantization come from the Hub's file list with LFS metadata
(``HfApi.model_info(files_metadata=True)``) and are cached in ``app_paths().cache_dir``, so the menu still shows
real sizes offline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.errors import UserError
from app.core.files import read_json, write_json_atomic
from app.core.models.catalog import ModelFiles, RemoteFile, group_gguf_files
from app.core.paths import app_paths

log = logging.getLogger(__name__)

LISTING_MAX_AGE_SECONDS = 24 * 3600
HUB_TIMEOUT_SECONDS = 15.0


class HubUnavailableError(UserError):
    """The Hub cannot be asked: offline mode, no network, or the server is down."""


class HubAccessError(UserError):
    """The Hub answered, but no: a gated or missing repository or file."""


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
        log.info("the Hub at %s cannot be reached: %r", endpoint, exc)
        _reached[endpoint] = False
        return HubUnavailableError(
            f"The Hugging Face Hub at {endpoint} cannot be reached ({_plain_reason(exc)}). Check the internet "
            "connection (or proxy) and try again; models already on this computer still work."
        )
    return None


def _plain_reason(exc: BaseException) -> str:
    """Why a connection failed, in words: "[Errno -2] Name or service not known" is the log's, not the person's."""
    import httpx2

    if isinstance(exc, (httpx2.TimeoutException, TimeoutError)):
        return "it did not answer in time"
    text = str(exc).lower()
    if any(
        m in text
        for m in ("name or service not known", "name resolution", "nodename nor servname", "getaddrinfo")
    ):
        return "its address could not be looked up, so this computer is probably offline"
    if "refused" in text:
        return "the connection was refused"
    if "unreachable" in text:
        return "the network is unreachable"
    return "the connection failed"


# Whether each endpoint answered the last time it was asked. huggingface_hub's search retries a failed connection
# five times with back-off (~23 s before it gives up); a search first asks once, quickly, unless the Hub answered
# last time, so an unreachable Hub is reported at once.
_reached: dict[str, bool] = {}
PROBE_TIMEOUT_SECONDS = 5.0


def _check_reachable(endpoint: str) -> None:
    """One request without retries, unless the Hub answered last time; raises the sentence if it cannot be
    reached. Any HTTP answer counts: the server is there (the request itself reports its errors)."""
    if _reached.get(endpoint):
        return
    from huggingface_hub.utils import get_session

    try:
        get_session().get(f"{endpoint}/api/models", params={"limit": 1}, timeout=PROBE_TIMEOUT_SECONDS)
    except Exception as exc:
        error = hub_error(exc, "", endpoint)
        if error is None:
            raise
        raise error from exc
    _reached[endpoint] = True


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
    _reached[(endpoint or default_endpoint()).rstrip("/")] = True
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
    _check_reachable((endpoint or default_endpoint()).rstrip("/"))
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
