"""The physical limit of token generation on this machine: memory bandwidth over the bytes of weights read per token.

Generating one token multiplies the one new token's activations by every weight matrix of the model once, so every
weight is streamed from memory once per token; for a model larger than the last-level cache nothing of it is still
cached from the token before. So

    tokens/s <= memory read bandwidth / bytes of weights read per token.

The bound leaves out the key/value cache, which attention also reads (a few per cent of the weights for the short
contexts measured here); counting it would only lower the bound, so the bound stays an upper one either way.

The bandwidth is measured here, in the benchmark, by reading (not copying) an array much larger than the last-level
cache, best of several repetitions: with one thread, and with as many threads as llama.cpp uses, each summing its own
slice of the array (numpy releases the GIL while it sums). llama.cpp's threads read their shares of each weight matrix
in parallel, and one core alone cannot keep enough reads in flight to draw all the bandwidth there is, so the
multi-threaded figure is the right bound; the bound takes the larger of the two figures, as llama.cpp could always
do what one thread does. The sum is of 64-bit integers on purpose: numpy sums floats pairwise, which on a modern core
tops out near 16 GB/s even from cache (it measures the adder, not the memory), while an integer sum runs at ~60 GB/s
from cache, so from a 512 MB array it is the memory that sets its pace.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psutil

from app.core.llm.gguf_check import GGUFInfo, TensorInfo

# Far larger than any last-level cache of a desktop CPU (tens of MB), so the reads come from memory.
SAMPLE_BYTES = 512 * 1024 * 1024
REPEATS = 20
BUDGET_SECONDS = 2.0

# Tables that generation reads one row of per token (a lookup, not a matrix product): the token embedding, the
# per-layer token embeddings (Gemma 3n), learned position embeddings (GPT-2) and token types (BERT).
LOOKUP_TABLES = (
    "token_embd.weight",
    "per_layer_token_embd.weight",
    "position_embd.weight",
    "token_types.weight",
)
TOKEN_EMBEDDING = "token_embd.weight"
OUTPUT_MATRIX = "output.weight"
# A mixture-of-experts layer stores all its experts in one tensor each (``ffn_up_exps`` ...); a token reads only the
# experts the router picks. Shared experts (``_shexp``) are read by every token.
EXPERTS_MARKER = "_exps."


@dataclass(frozen=True)
class MemoryBandwidth:
    """Bytes per second read from memory: by one thread, and by ``threads`` threads reading in parallel."""

    single_thread: float
    threads: int
    multi_thread: float
    sample_bytes: int

    @property
    def bound(self) -> float:
        """The figure the generation bound uses: the most llama.cpp's threads were seen to read."""
        return max(self.single_thread, self.multi_thread)

    def describe(self) -> str:
        multi = f", {self.threads} threads {self.multi_thread / 1e9:.1f} GB/s" if self.threads > 1 else ""
        return (
            f"Memory read bandwidth: 1 thread {self.single_thread / 1e9:.1f} GB/s{multi} "
            f"(best of {REPEATS} sums of a {self.sample_bytes // (1024 * 1024)} MB array; the bound uses "
            f"{self.bound / 1e9:.1f} GB/s, as llama.cpp's {self.threads} thread(s) read in parallel)"
        )


def measure_read_bandwidth(
    threads: int = 1,
    sample_bytes: int = SAMPLE_BYTES,
    repeats: int = REPEATS,
    budget_seconds: float = BUDGET_SECONDS,
) -> float:
    """Bytes per second that ``threads`` threads read from memory, each summing its slice of one large array; the
    best of ``repeats`` runs (the one least disturbed by other programs), stopping early once the time budget is
    spent. The array is written before timing so page faults are not measured, and one untimed run starts the
    threads and warms the page tables."""
    import numpy as np

    threads = max(1, threads)
    array = np.ones(max(threads, sample_bytes // 8), dtype=np.int64)
    slices = np.array_split(array, threads)
    best = math.inf
    started_all = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(np.sum, slices))
        for attempt in range(max(2, repeats)):
            started = time.perf_counter()
            list(pool.map(np.sum, slices))
            best = min(best, time.perf_counter() - started)
            if attempt >= 1 and time.perf_counter() - started_all > budget_seconds:
                break
    return array.nbytes / max(best, 1e-9)


def measure_bandwidth(threads: int, sample_bytes: int = SAMPLE_BYTES) -> MemoryBandwidth:
    """The read bandwidth with one thread and with ``threads`` threads, on an array that fits in a quarter of the
    memory free right now (so measuring never pushes the loaded model out of memory)."""
    sample = max(64 * 1024 * 1024, min(sample_bytes, psutil.virtual_memory().available // 4))
    single = measure_read_bandwidth(1, sample)
    multi = measure_read_bandwidth(threads, sample) if threads > 1 else single
    return MemoryBandwidth(single, max(1, threads), multi, sample)


@dataclass(frozen=True)
class WeightsPerToken:
    """Bytes of weights generation reads for each token, and how they were counted from the tensors."""

    bytes_per_token: int
    tensor_bytes: int  # every tensor in the file
    lookup_table_bytes: int  # tables read one row per token (whole sizes)
    lookup_row_bytes: int  # the rows of them one token gathers
    output_matrix_bytes: int  # the output matrix: ``output.weight``, or the token embedding when tied
    tied_output: bool  # the file has no output matrix of its own: the token embedding is the output matrix
    experts_not_picked_bytes: int  # mixture-of-experts weights a token's router leaves unread

    def describe(self) -> str:
        parts = [f"{self.tensor_bytes / 1e6:.1f} MB of tensors"]
        if self.lookup_table_bytes:
            parts.append(
                f"less {self.lookup_table_bytes / 1e6:.1f} MB of embedding tables of which a token reads one "
                f"row ({self.lookup_row_bytes} bytes)"
            )
        if self.tied_output:
            parts.append(
                f"plus the token embedding again, whole ({self.output_matrix_bytes / 1e6:.1f} MB): "
                "it is the output matrix too"
            )
        if self.experts_not_picked_bytes:
            parts.append(f"less {self.experts_not_picked_bytes / 1e6:.1f} MB of experts not picked")
        return f"Weights read per token: {self.bytes_per_token / 1e6:.1f} MB ({', '.join(parts)})"


def _row_bytes(tensor: TensorInfo) -> int:
    """Bytes of one row of a table: ggml lists a row's length first, so the rows are the other dimensions."""
    rows = math.prod(tensor.shape[1:]) or 1
    return tensor.n_bytes // rows


def weights_read_per_token(info: GGUFInfo) -> WeightsPerToken:
    """The bytes of weights one generated token reads, counted from the GGUF's tensor table.

    Every tensor is read whole once per token (the matrices of every layer, the norms, the output matrix), except:

    - lookup tables (``token_embd`` and the other ``LOOKUP_TABLES``): the token's row is gathered, nothing more, so
      each counts as one row;
    - but when the file has no ``output.weight``, the model ties its output to the token embedding: the logits are
      the product of the last hidden state with the whole ``token_embd`` matrix, so it is counted whole once, on
      top of the row the lookup gathers (two separate reads in llama.cpp's graph);
    - mixture-of-experts tensors (``*_exps``): a token reads only ``expert_used_count`` of ``expert_count``
      experts, so each counts at that share.

    Sizes are the tensors' data sizes from the header (blocks x bytes per block of their ggml type), not the file
    size, which also holds the metadata and the tokenizer's vocabulary.
    """
    tensor_bytes = sum(tensor.n_bytes for tensor in info.tensors)
    by_name = {tensor.name: tensor for tensor in info.tensors}
    tied = OUTPUT_MATRIX not in by_name
    output = by_name.get(TOKEN_EMBEDDING if tied else OUTPUT_MATRIX)
    lookups = [by_name[name] for name in LOOKUP_TABLES if name in by_name]
    expert_count = info.arch_value("expert_count")
    experts_used = info.arch_value("expert_used_count")
    expert_share = (
        experts_used / expert_count
        if isinstance(expert_count, int) and isinstance(experts_used, int) and 0 < experts_used < expert_count
        else 1.0
    )
    experts_not_picked = sum(
        tensor.n_bytes - round(tensor.n_bytes * expert_share)
        for tensor in info.tensors
        if EXPERTS_MARKER in tensor.name
    )
    lookup_table_bytes = sum(tensor.n_bytes for tensor in lookups)
    lookup_row_bytes = sum(_row_bytes(tensor) for tensor in lookups)
    output_bytes = output.n_bytes if output is not None else 0
    return WeightsPerToken(
        bytes_per_token=tensor_bytes
        - lookup_table_bytes
        + lookup_row_bytes
        + (output_bytes if tied else 0)
        - experts_not_picked,
        tensor_bytes=tensor_bytes,
        lookup_table_bytes=lookup_table_bytes,
        lookup_row_bytes=lookup_row_bytes,
        output_matrix_bytes=output_bytes,
        tied_output=tied and output is not None,
        experts_not_picked_bytes=experts_not_picked,
    )


@dataclass(frozen=True)
class GenerationBound:
    """The most tokens/s the memory allows: the bandwidth over the bytes of weights read per token."""

    bandwidth: float  # bytes per second
    bytes_per_token: int

    @property
    def tokens_per_second(self) -> float:
        return self.bandwidth / self.bytes_per_token if self.bytes_per_token > 0 else 0.0

    def beside(self, tokens_per_second: float) -> str:
        """What to print beside a generation figure: the bound and the share of it reached."""
        if self.tokens_per_second <= 0:
            return "bound unknown"
        return (
            f"bound {self.tokens_per_second:.0f} tokens/s (bandwidth {self.bandwidth / 1e9:.1f} GB/s / "
            f"{self.bytes_per_token / 1e6:.1f} MB per token) · "
            f"{tokens_per_second / self.tokens_per_second:.0%} of it"
        )
