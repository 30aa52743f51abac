"""The recommended embedding model is pinned whole: the Hub's file must have the catalog's size and sha256, or
nothing is fetched; a file that matches its pin downloads like any model and becomes the libraries' default."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from app.core.models.catalog import EmbeddingCatalogEntry, load_embedding_catalog
from app.core.models.hub import HubAccessError
from tests.fixtures.fake_hub import FakeHub
from tests.helpers.downloads import make_downloader


def recommended() -> EmbeddingCatalogEntry:
    return load_embedding_catalog()[0]


def test_the_catalog_names_a_real_embedding_repository_file_and_hash() -> None:
    entry = recommended()
    assert entry.repo_id == "nomic-ai/nomic-embed-text-v1.5-GGUF"
    assert entry.file == "nomic-embed-text-v1.5.Q8_0.gguf"
    assert entry.size == 146_146_432 and len(entry.sha256) == 64 and len(entry.revision) == 40
    assert entry.dimensions == 768


def test_a_file_that_differs_from_its_pin_is_refused_before_a_byte_is_fetched(hub: FakeHub) -> None:
    entry = recommended()
    hub.add_repo(entry.repo_id, {entry.file: b"GGUF" + bytes(4096)})  # same name, other bytes
    downloader = make_downloader(hub)
    with pytest.raises(HubAccessError, match="not the file LlamaDesk knows"):
        downloader.plan(entry.repo_id, filename=entry.file)
    assert not hub.file_gets()


def test_a_file_that_matches_its_pin_downloads_and_is_verified(
    hub: FakeHub, embedding_model_path: Path
) -> None:
    data = embedding_model_path.read_bytes()
    entry = replace(
        recommended(),
        repo_id="llamadesk-tests/embedding-GGUF",
        file=embedding_model_path.name,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    hub.add_repo(entry.repo_id, {entry.file: embedding_model_path})
    downloader = make_downloader(hub)
    downloader.pins = [entry]
    result = downloader.download(downloader.plan(entry.repo_id, filename=entry.file))
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == entry.sha256
