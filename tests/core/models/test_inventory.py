"""The one list of installed models: the models folder, the Hugging Face cache, imported files and the starter."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app.core.errors import UserError
from app.core.models.inventory import (
    default_model,
    find_installed,
    installed_models,
    remove_installed,
    starter_model_path,
)
from app.core.paths import app_paths
from tests.helpers.downloads import SMALL


@pytest.fixture(autouse=True)
def empty_hf_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The Hugging Face cache of this machine is not the test's business."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))


def downloaded_file(relative: str, data: bytes = b"GGUF") -> Path:
    path = app_paths().models_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_hf_cache(root: Path) -> Path:
    """The cache's own layout: blobs by hash, a snapshot per commit linking to them, a ref to the commit."""
    repo = root / "models--someone--Cached-GGUF"
    commit = "a" * 40
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in (("Cached-Q5_K_M.gguf", SMALL), ("mmproj-f16.gguf", b"vision")):
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(blob)
    return snapshot


def test_downloaded_then_cache_then_imported_then_starter(tmp_path: Path) -> None:
    first = downloaded_file("org__A-GGUF/A-Q4_K_M.gguf", b"a" * 10)
    parts = [downloaded_file(f"org__Big-GGUF/Big-Q8_0-0000{i}-of-00002.gguf", b"b" * 20) for i in (1, 2)]
    downloaded_file(".partial/org__C-GGUF/C-Q4_K_M.gguf")  # a download in progress is not a model
    imported = tmp_path / "elsewhere" / "Mine.gguf"
    imported.parent.mkdir()
    imported.write_bytes(b"m" * 5)
    make_hf_cache(tmp_path / "hf-cache")

    models = installed_models([str(imported), str(first)], hf_cache_dir=tmp_path / "hf-cache")
    assert [(m.id, m.source) for m in models[:4]] == [
        ("org/A-GGUF:Q4_K_M", "downloaded"),
        ("org/Big-GGUF:Q8_0", "downloaded"),
        ("someone/Cached-GGUF:Q5_K_M", "huggingface cache"),
        ("Mine", "imported"),  # the imported copy of a downloaded file is listed once, as downloaded
    ]
    assert [m.source for m in models[4:]] == (["starter"] if starter_model_path() else [])
    big = models[1]
    assert big.path == parts[0].resolve() and big.parts == tuple(p.resolve() for p in parts)
    assert big.size == 40 and big.display_name == "Big-Q8_0-00001-of-00002" and big.removable
    assert not models[2].removable and not models[3].removable

    # The window's picker leaves the Hugging Face cache out; the rest is the same list in the same order.
    picker = installed_models([str(imported), str(first)], include_hf_cache=False)
    assert picker == [m for m in models if m.source != "huggingface cache"]


def test_a_model_named_with_of_is_not_taken_for_a_split_part() -> None:
    # Only llama.cpp's own part names (-00002-of-00003) are parts; "Mixture-of-Experts" is a model.
    path = downloaded_file("org__MoE-GGUF/Mixture-of-Experts-Q4_K_M.gguf")
    assert [m.path for m in installed_models(include_hf_cache=False)][:1] == [path.resolve()]


def test_find_and_default_model(tmp_path: Path) -> None:
    path = downloaded_file("org__A-GGUF/A-Q4_K_M.gguf")
    assert find_installed("ORG/a-gguf:q4_k_m") == find_installed("A-Q4_K_M.gguf") == find_installed(str(path))
    assert find_installed("nothing:Q4_K_M") is None
    assert default_model() == path.resolve()
    other = tmp_path / "last.gguf"
    other.write_bytes(b"x")
    assert default_model(str(other)) == other
    assert default_model(str(tmp_path / "gone.gguf")) == path.resolve()


def test_removing_deletes_every_part_and_the_empty_folder() -> None:
    for i in (1, 2):
        downloaded_file(f"org__Big-GGUF/Big-Q8_0-0000{i}-of-00002.gguf", b"b" * 20)
    (model,) = [m for m in installed_models() if m.source == "downloaded"]
    assert remove_installed(model) == 40
    assert not (app_paths().models_dir / "org__Big-GGUF").exists()


def test_gguf_files_in_the_hugging_face_cache_are_listed_but_not_deleted_here(tmp_path: Path) -> None:
    snapshot = make_hf_cache(tmp_path / "hf-cache")

    cached = [
        m for m in installed_models(hf_cache_dir=tmp_path / "hf-cache") if m.source == "huggingface cache"
    ]
    assert [(m.id, m.size) for m in cached] == [("someone/Cached-GGUF:Q5_K_M", len(SMALL))]
    with pytest.raises(UserError, match="Hugging Face cache"):
        remove_installed(cached[0])
    assert (snapshot / "Cached-Q5_K_M.gguf").exists()
