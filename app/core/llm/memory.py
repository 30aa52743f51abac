"""The memory a model takes once llama.cpp has loaded it: weights, the KV cache at a context size, compute
buffers and a fixed overhead. Pure arithmetic on sizes and the GGUF's shape, so it can be checked by hand: the
engine refuses with it a load that would not fit, and the model library's fit advice ("runs well", "tight")
builds on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.llm.gguf_check import GGUFInfo

# A fixed allowance for llama.cpp's own buffers, graph and the Python process around it.
OVERHEAD_BYTES = 150 * 1024 * 1024


@dataclass(frozen=True)
class ModelShape:
    """The dimensions that decide memory beyond the weights."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    n_vocab: int

    @classmethod
    def from_gguf(cls, info: GGUFInfo) -> ModelShape:
        def arch_int(key: str, default: int) -> int:
            value = info.arch_value(key)
            if isinstance(value, list) and value:  # per-layer values (some hybrids): take the largest
                value = max(int(v) for v in value)
            return int(value) if isinstance(value, (int, float)) and value > 0 else default

        n_layers = arch_int("block_count", 32)
        n_heads = arch_int("attention.head_count", 32)
        n_kv_heads = arch_int("attention.head_count_kv", n_heads)
        embedding = arch_int("embedding_length", 4096)
        head_dim = arch_int("attention.key_length", max(1, embedding // max(1, n_heads)))
        tokens = info.metadata.get("tokenizer.ggml.tokens")
        n_vocab = len(tokens) if isinstance(tokens, list) and len(tokens) else 32_000
        return cls(n_layers, n_heads, n_kv_heads, head_dim, n_vocab)


def kv_cache_bytes(shape: ModelShape, context_size: int, bytes_per_value: float = 2.0) -> int:
    """Keys and values (hence 2) for every layer and position, f16 by default."""
    return int(2 * shape.n_layers * context_size * shape.n_kv_heads * shape.head_dim * bytes_per_value)


def compute_buffer_bytes(shape: ModelShape, context_size: int, batch_size: int = 512) -> int:
    """llama.cpp's scratch memory: the logits of one batch plus the attention scores (f32) of one layer."""
    logits = batch_size * shape.n_vocab * 4
    attention_scores = shape.n_heads * context_size * batch_size * 4
    return logits + attention_scores


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    compute: int
    overhead: int = OVERHEAD_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead


def estimate_memory(
    weights_bytes: int, shape: ModelShape, context_size: int, batch_size: int = 512
) -> MemoryEstimate:
    return MemoryEstimate(
        weights=weights_bytes,
        kv_cache=kv_cache_bytes(shape, context_size),
        compute=compute_buffer_bytes(shape, context_size, batch_size),
    )
