"""The real models the tests run on, and what each one's file is known to be.

The test model is SmolLM2-135M-Instruct unless LLAMADESK_TEST_MODEL=gemma picks Gemma 3 270M. A tiny
model's greedy wording changes with the CPU's instruction set, the thread count and llama.cpp's version, so
tests on the test model check what the app does with a reply, and what its file says (below), never what a
reply says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from app.core.llm.engine import ModelInfo

TEST_MODEL_VARIABLE = "LLAMADESK_TEST_MODEL"


@dataclass(frozen=True)
class ModelFacts:
    """What a model file says of itself, as LlamaDesk reads it."""

    name: str  # as LLAMADESK_TEST_MODEL names it
    architecture: str
    parameters: tuple[float, float]  # low, high: the weights counted from its tensors lie between
    native_context: int
    chat_template_marker: str | None  # a piece of the file's own chat template; None: the file has none
    quantization: str  # as the file names it (general.file_type), as gguf_check reports it


SMOLLM2 = ModelFacts("smollm2", "llama", (130e6, 140e6), 8192, "<|im_start|>", "Q4_1")
# Gemma's 262k-token embedding table is Q8_0 and outweighs its Q4_K layers: only the file's own file type
# says Q4_K_M.
GEMMA = ModelFacts("gemma", "gemma3", (260e6, 275e6), 32768, None, "Q4_K_M")
TEST_MODELS = {facts.name: facts for facts in (SMOLLM2, GEMMA)}


def chosen_test_model() -> str:
    """The value of LLAMADESK_TEST_MODEL as the tests read it: unset or blank means smollm2."""
    return os.environ.get(TEST_MODEL_VARIABLE, "").strip().lower() or SMOLLM2.name


def model_info(context_size: int = 2048, tool_format: str = "generic") -> ModelInfo:
    """What a loaded model is described by, for checking requests against it without loading one."""
    return ModelInfo(
        path=Path("described.gguf"),
        name="Described",
        architecture="llama",
        parameters=135_000_000,
        native_context=8192,
        context_size=context_size,
        has_chat_template=True,
        file_size=1,
        quantization="Q4_1",
        threads=1,
        gpu_layers=0,
        load_seconds=0.0,
        tool_format=tool_format,
    )
