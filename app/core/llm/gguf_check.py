"""Validate a GGUF file's header before llama.cpp sees it.

llama.cpp trusts the header: a malformed one can ``abort()`` the whole process (llama.cpp #24884), which for
a desktop app means losing the window with everything in it. So every file is read here first, with every
length and offset checked against the file's size, and refused with a sentence a person can act on.

Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from app.core.errors import ModelFileError
from app.core.units import human_bytes

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32

# Generous limits: real files stay far below them, a corrupt count would otherwise make us allocate forever.
MAX_KEY_LENGTH = 65_535
MAX_STRING_LENGTH = 64 * 1024 * 1024
MAX_KV_COUNT = 1_000_000
MAX_TENSOR_COUNT = 10_000_000
MAX_DIMS = 8

# value types
(
    _UINT8,
    _INT8,
    _UINT16,
    _INT16,
    _UINT32,
    _INT32,
    _FLOAT32,
    _BOOL,
    _STRING,
    _ARRAY,
    _UINT64,
    _INT64,
    _FLOAT64,
) = range(13)
_SCALAR_FORMATS: dict[int, str] = {
    _UINT8: "<B",
    _INT8: "<b",
    _UINT16: "<H",
    _INT16: "<h",
    _UINT32: "<I",
    _INT32: "<i",
    _FLOAT32: "<f",
    _BOOL: "<?",
    _UINT64: "<Q",
    _INT64: "<q",
    _FLOAT64: "<d",
}

# ggml tensor types: (elements per block, bytes per block), from ggml.c's type_traits.
GGML_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 36),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
}

GGML_TYPE_NAMES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
    11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS",
    19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32",
    27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}  # fmt: skip

# llama.cpp's LLAMA_FTYPE values (llama.h), which a file names in ``general.file_type``: the quantization as its
# maker chose it, mixes such as Q4_K_M included, which no single tensor type tells.
FILE_TYPE_NAMES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}  # fmt: skip

# The model architectures the bundled llama.cpp knows (its src/llama-arch.cpp, LLM_ARCH_NAMES).
SUPPORTED_ARCHITECTURES = frozenset(
    [
        "llama",
        "llama4",
        "deci",
        "falcon",
        "grok",
        "gpt2",
        "gptj",
        "gptneox",
        "mpt",
        "baichuan",
        "starcoder",
        "refact",
        "bert",
        "modern-bert",
        "nomic-bert",
        "nomic-bert-moe",
        "neo-bert",
        "jina-bert-v2",
        "jina-bert-v3",
        "eurobert",
        "bloom",
        "stablelm",
        "qwen",
        "qwen2",
        "qwen2moe",
        "qwen2vl",
        "qwen3",
        "qwen3moe",
        "qwen3next",
        "qwen3vl",
        "qwen3vlmoe",
        "qwen35",
        "qwen35moe",
        "qwen4exp",
        "phi2",
        "phi3",
        "phimoe",
        "plamo",
        "plamo2",
        "plamo3",
        "codeshell",
        "orion",
        "internlm2",
        "minicpm",
        "minicpm3",
        "gemma",
        "gemma2",
        "gemma3",
        "gemma3n",
        "gemma4",
        "gemma4-assistant",
        "gemma-embedding",
        "starcoder2",
        "mamba",
        "mamba2",
        "maple",
        "jamba",
        "falcon-h1",
        "xverse",
        "command-r",
        "cohere2",
        "cohere2moe",
        "dbrx",
        "olmo",
        "olmo2",
        "olmoe",
        "muse-glimmer",
        "openelm",
        "arctic",
        "deepseek",
        "deepseek2",
        "deepseek2-ocr",
        "deepseek32",
        "deepseek4",
        "chatglm",
        "glm4",
        "glm4moe",
        "glm-dsa",
        "bitnet",
        "t5",
        "t5encoder",
        "jais",
        "jais2",
        "nemotron",
        "nemotron_h",
        "nemotron_h_moe",
        "exaone",
        "exaone4",
        "exaone-moe",
        "rwkv6",
        "rwkv6qwen2",
        "rwkv7",
        "arwkv7",
        "granite",
        "granitemoe",
        "granitehybrid",
        "graniteswitch",
        "granite_swa",
        "chameleon",
        "wavtokenizer-dec",
        "plm",
        "bailingmoe",
        "bailingmoe2",
        "bailingmoe3",
        "dots1",
        "dots3note",
        "arcee",
        "afmoe",
        "laguna",
        "ernie4_5",
        "ernie4_5-moe",
        "hunyuan-moe",
        "hunyuan-dense",
        "hunyuan_vl",
        "hy_v3",
        "hy_v4",
        "smollm3",
        "gpt-oss",
        "lfm2",
        "lfm2moe",
        "dream",
        "smallthinker",
        "llada",
        "llada-moe",
        "seed_oss",
        "grovemoe",
        "apertus",
        "minimax-01",
        "hrm_text",
        "minimax-m2",
        "minimax-m3",
        "cogvlm",
        "rnd1",
        "pangu-embedded",
        "mistral3",
        "eagle3",
        "dflash",
        "mistral4",
        "paddleocr",
        "mimo2",
        "step35",
        "spark2_5",
        "llama-embed",
        "maincoder",
        "kimi-linear",
        "kimi-k3",
        "glm5-next",
        "talkie",
        "mellum",
        "nanbeige",
    ]
)

# Architectures that embed or encode rather than chat: valid files, but not something to talk to.
NON_CHAT_ARCHITECTURES = frozenset(
    [
        "bert",
        "modern-bert",
        "nomic-bert",
        "nomic-bert-moe",
        "neo-bert",
        "jina-bert-v2",
        "jina-bert-v3",
        "eurobert",
        "t5encoder",
        "wavtokenizer-dec",
        "gemma-embedding",
        "llama-embed",
    ]
)


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    n_bytes: int


@dataclass
class GGUFInfo:
    """What the header says, once every part of it was found inside the file."""

    path: Path
    file_size: int
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def name(self) -> str:
        name = self.metadata.get("general.name")
        return str(name) if name else self.path.stem

    @property
    def parameter_count(self) -> int:
        total = 0
        for tensor in self.tensors:
            count = 1
            for dim in tensor.shape:
                count *= dim
            total += count
        return total

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if isinstance(value, int) else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value.strip() else None

    @property
    def quantization(self) -> str:
        """The quantization as people name it (Q4_K_M ...): the file's own ``general.file_type`` when it names
        one, else the weight type holding the most bytes among the large tensors. That guess misreads mixes: a
        Q4_K_M file whose embedding table is Q8_0 (Gemma's 262k tokens) holds more bytes in Q8_0."""
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int) and file_type in FILE_TYPE_NAMES:
            return FILE_TYPE_NAMES[file_type]
        weights: dict[int, int] = {}
        for tensor in self.tensors:
            if len(tensor.shape) >= 2:
                weights[tensor.ggml_type] = weights.get(tensor.ggml_type, 0) + tensor.n_bytes
        if not weights:
            return "unknown"
        dominant = max(weights, key=lambda t: weights[t])
        return GGML_TYPE_NAMES.get(dominant, f"type {dominant}")

    def arch_value(self, key: str) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}")


class _Reader:
    """Reads little-endian values and refuses to read past the end of the file.

    The position is tracked here rather than asked of the file: ``tell()`` is a system-call-sized cost that
    added up to a third of a second over a 100k-entry token list.
    """

    def __init__(self, handle: BinaryIO, size: int, path: Path) -> None:
        self.handle = handle
        self.size = size
        self.path = path
        self.position = handle.tell()

    def read(self, n: int, what: str) -> bytes:
        if n < 0 or self.position + n > self.size:
            raise _truncated(self.path, what)
        data = self.handle.read(n)
        if len(data) != n:
            raise _truncated(self.path, what)
        self.position += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n < 0 or self.position + n > self.size:
            raise _truncated(self.path, what)
        self.handle.seek(n, os.SEEK_CUR)
        self.position += n

    def skip_strings(self, count: int, what: str) -> None:
        """Bounds-check ``count`` length-prefixed strings without keeping them.

        Token lists hold 30k-250k strings. They are walked in 1 MiB blocks with ``unpack_from`` rather than two
        file calls per string, so the walk takes milliseconds and does not hold the interpreter lock long
        enough to stall the window's thread.
        """
        unpack_length = _U64.unpack_from
        block_start = self.position  # file offset of block[0]
        block = b""
        offset = 0  # of the next string's length, within block
        for _ in range(count):
            if offset + 8 > len(block):
                block_start += offset
                if block_start + 8 > self.size:
                    raise _truncated(self.path, what)
                self.handle.seek(block_start)
                block = self.handle.read(_STRING_BLOCK)
                offset = 0
                if len(block) < 8:  # the file shrank since its size was read
                    raise _truncated(self.path, what)
            length = unpack_length(block, offset)[0]
            if length > MAX_STRING_LENGTH:
                raise _corrupt(self.path, f"a string in {what} claims {length} bytes")
            offset += 8 + length
        end = block_start + offset
        if end > self.size:
            raise _truncated(self.path, what)
        self.handle.seek(end)
        self.position = end

    def scalar(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt), what))[0]

    def u32(self, what: str) -> int:
        return int(self.scalar("<I", what))

    def u64(self, what: str) -> int:
        return int(self.scalar("<Q", what))

    def string(self, what: str, limit: int = MAX_STRING_LENGTH) -> str:
        length = self.u64(what)
        if length > limit:
            raise _corrupt(self.path, f"{what} claims a length of {length} bytes")
        raw = self.read(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _corrupt(self.path, f"{what} is not valid UTF-8 text") from exc


_U64 = struct.Struct("<Q")
_STRING_BLOCK = 1 << 20


def _truncated(path: Path, what: str) -> ModelFileError:
    return ModelFileError(
        f"The model file {path.name} is incomplete: it ends in the middle of its {what}. "
        "It was probably not fully downloaded or copied; download it again."
    )


def _corrupt(path: Path, detail: str) -> ModelFileError:
    return ModelFileError(
        f"The model file {path.name} is damaged: its header is corrupt ({detail}). "
        "Download it again or choose another file."
    )


def _read_value(reader: _Reader, value_type: int, what: str, depth: int = 0) -> Any:
    if value_type in _SCALAR_FORMATS:
        return reader.scalar(_SCALAR_FORMATS[value_type], what)
    if value_type == _STRING:
        return reader.string(what)
    if value_type == _ARRAY:
        if depth > 2:
            raise _corrupt(reader.path, f"{what} nests arrays too deeply")
        item_type = reader.u32(what)
        count = reader.u64(what)
        if item_type in _SCALAR_FORMATS:
            width = struct.calcsize(_SCALAR_FORMATS[item_type])
            if count * width > reader.size - reader.position:
                raise _truncated(reader.path, what)
            if count > 4096:
                # Large numeric arrays (token scores, types) are only bounds-checked, not decoded.
                reader.skip(count * width, what)
                return _SkippedArray(count)
            raw = reader.read(count * width, what)
            return list(struct.unpack(f"<{count}{_SCALAR_FORMATS[item_type][1]}", raw))
        if item_type == _STRING:
            if count * 8 > reader.size - reader.position:
                raise _truncated(reader.path, what)
            # Token lists have ~100k entries: keep the count, check each string, store none.
            reader.skip_strings(count, what)
            return _SkippedArray(count)
        if item_type == _ARRAY:
            return [_read_value(reader, _ARRAY, what, depth + 1) for _ in range(count)]
        raise _corrupt(reader.path, f"{what} has an unknown array item type {item_type}")
    raise _corrupt(reader.path, f"{what} has an unknown value type {value_type}")


class _SkippedArray(list[Any]):
    """A large array checked for bounds but not kept in memory; ``len()`` reports its real size."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.length = count

    def __len__(self) -> int:
        return self.length


def read_gguf(path: str | os.PathLike[str], *, require_tensor_data: bool = True) -> GGUFInfo:
    """Parse and bounds-check the header of ``path``; raise ModelFileError with a sentence if it is bad."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"The model file {path} was not found. Check the path or choose another file.")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file. Choose a .gguf file inside it.")
    try:
        size = path.stat().st_size
        handle = path.open("rb")
    except OSError as exc:
        raise ModelFileError(
            f"The model file {path.name} could not be opened ({exc.strerror}). Check that you may read it."
        ) from exc
    with handle:
        if size == 0:
            raise ModelFileError(
                f"The model file {path.name} is empty (0 bytes). The download probably failed; download it again."
            )
        magic = handle.read(4)
        if magic != GGUF_MAGIC:
            if len(magic) < 4 and GGUF_MAGIC.startswith(magic):
                raise _truncated(path, "header")
            raise ModelFileError(
                f"{path.name} is not a GGUF model file. LlamaDesk runs quantized models in the GGUF format "
                "(files ending in .gguf, such as those on Hugging Face)."
            )
        reader = _Reader(handle, size, path)
        version = reader.u32("header")
        if version not in SUPPORTED_VERSIONS:
            if version == 1:
                raise ModelFileError(
                    f"{path.name} uses GGUF version 1, an early format llama.cpp no longer reads. "
                    "Download a current copy of the model."
                )
            raise _corrupt(path, f"unknown GGUF version {version}")
        tensor_count = reader.u64("header")
        kv_count = reader.u64("header")
        if tensor_count > MAX_TENSOR_COUNT:
            raise _corrupt(path, f"it claims {tensor_count} tensors")
        if kv_count > MAX_KV_COUNT:
            raise _corrupt(path, f"it claims {kv_count} metadata entries")

        metadata: dict[str, Any] = {}
        for index in range(kv_count):
            key = reader.string(f"metadata key #{index + 1}", limit=MAX_KEY_LENGTH)
            if not key:
                raise _corrupt(path, f"metadata entry #{index + 1} has an empty name")
            if key in metadata:
                raise _corrupt(path, f"the metadata key '{key}' appears twice")
            value_type = reader.u32(f"metadata '{key}'")
            metadata[key] = _read_value(reader, value_type, f"metadata '{key}'")

        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise _corrupt(path, f"alignment {alignment!r} is not a power of two")

        tensors: list[TensorInfo] = []
        for index in range(tensor_count):
            name = reader.string(f"tensor #{index + 1} name", limit=MAX_KEY_LENGTH)
            n_dims = reader.u32(f"tensor '{name}'")
            if n_dims == 0 or n_dims > MAX_DIMS:
                raise _corrupt(path, f"tensor '{name}' has {n_dims} dimensions")
            shape = tuple(reader.u64(f"tensor '{name}'") for _ in range(n_dims))
            ggml_type = reader.u32(f"tensor '{name}'")
            offset = reader.u64(f"tensor '{name}'")
            if ggml_type not in GGML_TYPE_SIZES:
                raise ModelFileError(
                    f"{path.name} stores tensor '{name}' in a format (ggml type {ggml_type}) this version of "
                    "llama.cpp does not know. Try another quantization of the model or update LlamaDesk."
                )
            block, block_bytes = GGML_TYPE_SIZES[ggml_type]
            elements = 1
            for dim in shape:
                elements *= dim
            if shape[0] % block:
                raise _corrupt(
                    path, f"tensor '{name}' has a row of {shape[0]} values, not a multiple of {block}"
                )
            tensors.append(TensorInfo(name, shape, ggml_type, offset, elements // block * block_bytes))

        data_offset = reader.position
        data_offset += (-data_offset) % alignment
        if require_tensor_data:
            for tensor in tensors:
                if tensor.offset % alignment:
                    raise _corrupt(path, f"tensor '{tensor.name}' is not aligned")
                end = data_offset + tensor.offset + tensor.n_bytes
                if end > size:
                    missing = end - size
                    raise ModelFileError(
                        f"The model file {path.name} is incomplete: {human_bytes(missing)} of its weights are "
                        "missing. It was probably not fully downloaded; download it again."
                    )

    return GGUFInfo(path, size, version, metadata, tensors, data_offset)


def check_model_file(path: str | os.PathLike[str]) -> GGUFInfo:
    """Everything ``read_gguf`` checks, plus: is this a model this build can chat with?"""
    info = read_gguf(path)
    arch = info.architecture
    if not arch:
        raise _corrupt(info.path, "it does not name its architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelFileError(
            f"{info.path.name} is a '{arch}' model, an architecture this version of llama.cpp does not support. "
            "Update LlamaDesk or choose another model."
        )
    if arch in NON_CHAT_ARCHITECTURES:
        raise ModelFileError(
            f"{info.path.name} is a '{arch}' model, which makes embeddings and cannot chat. "
            "Choose an instruction-tuned chat model."
        )
    if not info.tensors:
        raise ModelFileError(
            f"{info.path.name} contains no weights; it is a vocabulary or adapter file, not a model."
        )
    split_count = info.metadata.get("split.count")
    if isinstance(split_count, int) and split_count > 1 and info.metadata.get("split.no", 0) != 0:
        raise ModelFileError(
            f"{info.path.name} is part {int(info.metadata.get('split.no', 0)) + 1} of a model split into "
            f"{split_count} files. Open the first part (-00001-of-...) instead."
        )
    return info
