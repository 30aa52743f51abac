"""Bad files must be refused by us, with a sentence, before llama.cpp can abort() the process."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app.core.errors import ModelFileError
from app.core.llm.gguf_check import check_model_file, read_gguf
from tests.fixtures import gguf_bytes as gb
from tests.helpers.models import ModelFacts


def refused(path: Path) -> str:
    with pytest.raises(ModelFileError) as caught:
        check_model_file(path)
    return str(caught.value)


def test_real_model_passes_and_is_described(model_path: Path, model_facts: ModelFacts) -> None:
    info = check_model_file(model_path)
    assert info.architecture == model_facts.architecture
    assert info.version == 3
    assert info.context_length == model_facts.native_context
    if model_facts.chat_template_marker is None:
        assert info.chat_template is None
    else:
        assert info.chat_template and model_facts.chat_template_marker in info.chat_template
    low, high = model_facts.parameters
    assert low < info.parameter_count < high
    assert info.quantization == model_facts.quantization
    # The last tensor's data ends inside the file, within one alignment of its end.
    end = max(info.data_offset + t.offset + t.n_bytes for t in info.tensors)
    assert info.file_size - 32 <= end <= info.file_size


def test_missing_file(tmp_path: Path) -> None:
    assert "was not found" in refused(tmp_path / "nope.gguf")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    assert "is empty" in refused(path)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "random.gguf"
    path.write_bytes(os.urandom(4096))
    assert "is not a GGUF model file" in refused(path)


def test_text_file_named_gguf(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("These are my notes, not a model.\n" * 20)
    assert "is not a GGUF model file" in refused(path)


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "magic.gguf"
    path.write_bytes(gb.header(magic=b"GGML"))
    assert "is not a GGUF model file" in refused(path)


def test_header_with_empty_key(tmp_path: Path) -> None:
    """The 37-byte file of llama.cpp #24884 that hit a GGML_ASSERT."""
    path = tmp_path / "empty-key.gguf"
    path.write_bytes(gb.header(entries=[gb.kv(b"", 1)]))
    message = refused(path)
    assert "damaged" in message and "empty name" in message


def test_truncated_copy_of_the_real_model(model_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.gguf"
    with model_path.open("rb") as src, path.open("wb") as dst:
        dst.write(src.read(model_path.stat().st_size // 2))
    message = refused(path)
    assert "incomplete" in message and "download it again" in message


def test_truncated_inside_the_header(model_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "short.gguf"
    with model_path.open("rb") as src:
        path.write_bytes(src.read(100_000))
    assert "incomplete" in refused(path)


def test_absurd_counts_are_refused_without_allocating(tmp_path: Path) -> None:
    path = tmp_path / "counts.gguf"
    path.write_bytes(gb.header(kv_count=2**63))
    assert "damaged" in refused(path)
    path.write_bytes(
        gb.header(entries=[gb.gguf_string("k") + (8).to_bytes(4, "little") + (2**62).to_bytes(8, "little")])
    )
    assert "damaged" in refused(path)


def test_tensor_data_outside_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nodata.gguf"
    path.write_bytes(gb.tiny_model(data=False))
    assert "incomplete" in refused(path)


def test_unsupported_architecture(tmp_path: Path) -> None:
    path = tmp_path / "future.gguf"
    path.write_bytes(gb.tiny_model(arch="skynet9"))
    assert "architecture this version of llama.cpp does not support" in refused(path)


def test_embedding_model_cannot_chat(tmp_path: Path) -> None:
    path = tmp_path / "bert.gguf"
    path.write_bytes(gb.tiny_model(arch="bert"))
    assert "cannot chat" in refused(path)


def test_old_version(tmp_path: Path) -> None:
    path = tmp_path / "v1.gguf"
    path.write_bytes(gb.header(version=1))
    assert "version 1" in refused(path)


def test_valid_tiny_file_passes(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(gb.tiny_model())
    info = read_gguf(path)
    assert info.name == "tiny" and info.parameter_count == 8


def test_every_prefix_of_a_valid_header_is_refused_not_crashed(model_path: Path, tmp_path: Path) -> None:
    """Cut the real header at many points: each cut is a sentence, never an exception of another kind."""
    path = tmp_path / "cut.gguf"
    with model_path.open("rb") as src:
        head = src.read(1_500_000)
    for cut in [1, 3, 4, 7, 8, 15, 23, 24, 30, 60, 200, 1000, 5000, 50_000, 400_000, 1_200_000]:
        path.write_bytes(head[:cut])
        with pytest.raises(ModelFileError):
            read_gguf(path)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    assert "is a folder" in refused(tmp_path)


def test_copy_of_real_model_still_passes(model_path: Path, tmp_path: Path, model_facts: ModelFacts) -> None:
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(model_path, copy)
    assert check_model_file(copy).architecture == model_facts.architecture


def test_token_list_spanning_many_blocks_is_walked_to_its_end(tmp_path: Path) -> None:
    """A 300k-entry token list (several read blocks, strings cut by block edges) and the entry after it."""
    tokens = [f"token-{index}-{'x' * (index % 37)}".encode() for index in range(300_000)]
    path = tmp_path / "vocab.gguf"
    path.write_bytes(
        gb.header(
            entries=[
                gb.kv("general.architecture", "llama"),
                gb.string_array("tokenizer.ggml.tokens", tokens),
                gb.kv("general.name", "after the tokens"),
            ]
        )
    )
    info = read_gguf(path, require_tensor_data=False)
    assert len(info.metadata["tokenizer.ggml.tokens"]) == 300_000
    assert info.name == "after the tokens"
    assert info.data_offset >= path.stat().st_size


def test_token_list_cut_short_or_with_an_absurd_length(tmp_path: Path) -> None:
    tokens = [b"abc"] * 200_000
    whole = gb.header(entries=[gb.string_array("tokenizer.ggml.tokens", tokens)])
    path = tmp_path / "cut.gguf"
    for cut in (len(whole) - 1, len(whole) - 4, 1_048_580, 2_000_000):
        path.write_bytes(whole[:cut])
        with pytest.raises(ModelFileError, match="incomplete"):
            read_gguf(path)
    absurd = gb.header(
        entries=[gb.string_array("tokenizer.ggml.tokens", [b"ok"])[:-10] + (2**40).to_bytes(8, "little")]
    )
    path.write_bytes(absurd + b"\0" * 64)
    with pytest.raises(ModelFileError, match="damaged"):
        read_gguf(path)


def test_quantization_is_the_files_own_file_type(smollm2_path: Path, gemma_path: Path) -> None:
    """Both real files, whichever test model is chosen: Gemma's Q8_0 embedding table outweighs its Q4_K layers,
    so only its general.file_type (15) says Q4_K_M."""
    assert read_gguf(smollm2_path).quantization == "Q4_1"
    assert read_gguf(gemma_path).quantization == "Q4_K_M"


def test_quantization_without_a_known_file_type_is_the_heaviest_weight_type(tmp_path: Path) -> None:
    path = tmp_path / "mixed.gguf"
    for file_type, expected in ((None, "Q8_0"), (9999, "Q8_0"), (18, "Q6_K")):
        entries = [gb.kv("general.architecture", "llama")]
        if file_type is not None:
            entries.append(gb.kv("general.file_type", file_type))
        # 64x32 Q8_0 values (2,176 bytes) outweigh 32x32 Q4_0 ones (576 bytes); 1-D tensors are not weights.
        tensors = [gb.tensor("a", (32, 32), 2), gb.tensor("b", (64, 32), 8), gb.tensor("c", (4096,), 0)]
        path.write_bytes(gb.header(entries=entries, tensors=tensors))
        assert read_gguf(path, require_tensor_data=False).quantization == expected
