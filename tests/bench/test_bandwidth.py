"""The generation bound: the memory bandwidth measured for real, and the bytes of weights a token reads counted from
the real model's tensor table, checked against the ``gguf`` package's own reading of the file."""

from __future__ import annotations

from pathlib import Path

import gguf

from app.bench.bandwidth import (
    GenerationBound,
    measure_bandwidth,
    measure_read_bandwidth,
    weights_read_per_token,
)
from app.core.llm.gguf_check import GGUFInfo, TensorInfo, read_gguf

MB = 1024 * 1024
GGML_F32 = 0
GGML_Q8_0 = 8  # blocks of 32 values in 34 bytes


def test_read_bandwidth_is_a_plausible_positive_figure() -> None:
    # 128 MB: four times the largest last-level cache seen here, still quick. Anything from a slow laptop under
    # load to a workstation's many channels lies between these generous bounds.
    for threads in (1, 2):
        bandwidth = measure_read_bandwidth(threads, sample_bytes=128 * MB, repeats=4)
        assert 0.3e9 < bandwidth < 2e12


def test_bandwidth_for_the_bound_is_the_best_of_one_and_many_threads() -> None:
    measured = measure_bandwidth(2, sample_bytes=64 * MB)
    assert measured.threads == 2 and measured.sample_bytes >= 64 * MB
    assert measured.bound == max(measured.single_thread, measured.multi_thread) > 0
    assert "GB/s" in measured.describe()


def test_bytes_per_token_of_the_test_model_match_its_tensors(model_path: Path) -> None:
    reader = gguf.GGUFReader(str(model_path))
    sizes = {tensor.name: int(tensor.n_bytes) for tensor in reader.tensors}
    embedding = next(tensor for tensor in reader.tensors if tensor.name == "token_embd.weight")
    vocabulary = int(embedding.shape[1])  # gguf lists a row's length first, then the rows
    tied = "output.weight" not in sizes
    # Every tensor, less the token embedding, of which one row is looked up per token; when the file has no
    # output matrix of its own the token embedding is the output matrix, read whole once more.
    expected = sum(sizes.values()) - sizes["token_embd.weight"] + sizes["token_embd.weight"] // vocabulary
    if tied:
        expected += sizes["token_embd.weight"]

    weights = weights_read_per_token(read_gguf(model_path))

    assert weights.bytes_per_token == expected
    assert weights.tensor_bytes == sum(sizes.values())
    assert weights.tied_output == tied
    assert f"{expected / 1e6:.1f} MB" in weights.describe()


def _table(name: str, rows: int, row_values: int = 64) -> TensorInfo:
    return TensorInfo(name, (row_values, rows), GGML_Q8_0, 0, rows * row_values // 32 * 34)


def _matrix(name: str, *shape: int) -> TensorInfo:
    values = 1
    for size in shape:
        values *= size
    return TensorInfo(name, shape, GGML_F32, 0, values * 4)


def test_a_separate_output_matrix_and_experts_are_counted_as_read() -> None:
    embedding = _table("token_embd.weight", rows=1000)
    output = _table("output.weight", rows=1000)
    experts = _matrix("blk.0.ffn_up_exps.weight", 64, 128, 8)  # 8 experts, 2 picked per token
    shared = _matrix("blk.0.ffn_up_shexp.weight", 64, 128)
    norm = _matrix("output_norm.weight", 64)
    info = GGUFInfo(
        path=Path("described.gguf"),
        file_size=0,
        version=3,
        metadata={
            "general.architecture": "qwen3moe",
            "qwen3moe.expert_count": 8,
            "qwen3moe.expert_used_count": 2,
        },
        tensors=[embedding, output, experts, shared, norm],
    )

    weights = weights_read_per_token(info)

    row = embedding.n_bytes // 1000
    assert not weights.tied_output
    assert (
        weights.bytes_per_token == row + output.n_bytes + experts.n_bytes // 4 + shared.n_bytes + norm.n_bytes
    )
    assert weights.experts_not_picked_bytes == experts.n_bytes * 3 // 4


def test_the_bound_line_says_the_bound_and_the_share_reached() -> None:
    bound = GenerationBound(bandwidth=20e9, bytes_per_token=50_000_000)
    assert bound.tokens_per_second == 400
    assert bound.beside(100.0) == ("bound 400 tokens/s (bandwidth 20.0 GB/s / 50.0 MB per token) · 25% of it")
