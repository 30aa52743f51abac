"""What a model is loaded with, checked before anything is loaded: the options (``LoadOptions``), their ranges,
the threads llama.cpp gets, the chat template chosen, and the plan (``LoadPlan``: the file checked, the context
and memory it will take) that ``Engine.load`` follows."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from app.core.errors import InvalidOptionError
from app.core.limits import (
    OutOfRange,
    check_batch_size,
    check_context_size,
    check_gpu_layers,
    check_threads,
)
from app.core.llm.bindings import gpu_offload_supported
from app.core.llm.gguf_check import GGUFInfo, check_model_file
from app.core.llm.memory import MemoryEstimate, ModelShape, estimate_memory
from app.core.llm.templates import BUILTIN_TEMPLATES, builtin_for_file, checked_template


@dataclass(frozen=True)
class LoadOptions:
    context_size: int = 4096  # 0: the model's own (trained) context length
    threads: int = 0  # 0: one per physical core, where llama.cpp is fastest on CPUs
    gpu_layers: int = -1  # -1: all; only used when this llama.cpp build can offload
    use_mmap: bool = True
    batch_size: int = 512
    # Off: measured 1.10x faster generation with it on (README, Speed), but a prompt evaluated in parts (a saved
    # state, then the rest) then gives other greedy tokens than evaluated at once.
    flash_attention: bool = False
    memory_budget: int | None = None  # bytes; None: the memory available right now
    chat_template: str | None = (
        None  # a built-in template's name (templates.BUILTIN_TEMPLATES); None: the file's
    )
    # Requests decoded together in one batch, each a sequence of one KV cache (app.core.llm.batched), sharing
    # the context_size cells evenly; 1: one at a time, the engine's own path only. AUTOMATIC_PARALLEL: as many as
    # memory allows (``automatic_parallel``), each with context_size cells of its own (the window's choice: its
    # Context size setting stays a conversation's room, whoever else the server answers).
    parallel: int = 1


# Sequences decoded together at most: beyond it each one's share of the context is too small to be of use.
MAX_PARALLEL = 16
AUTOMATIC_PARALLEL = 0
# Automatic chooses from these, the largest that memory allows: beyond 4 streams a CPU gains little more from a
# batch (llama-server's own automatic choice is 4).
AUTOMATIC_CHOICES = (4, 2, 1)
# The room automatic gives other requests may take at most this share of the memory left free after the model
# with one sequence: the rest of the computer keeps the most of it.
AUTOMATIC_MEMORY_SHARE = 0.25


def check_parallel(value: int, *, automatic: bool = True) -> int:
    """The number of requests decoded together, 1..MAX_PARALLEL (or AUTOMATIC_PARALLEL when ``automatic``);
    raises OutOfRange with a sentence."""
    lowest = AUTOMATIC_PARALLEL if automatic else 1
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= MAX_PARALLEL:
        also = " (0: as many as memory allows)" if automatic else ""
        raise OutOfRange(
            f"The number of requests answered together must be a whole number from {lowest} to {MAX_PARALLEL}"
            f"{also}, not {value!r}."
        )
    return value


def check_load_options(options: LoadOptions) -> None:
    """Refuse, with a sentence, options llama.cpp would mishandle (a traceback from the bindings, a "damaged
    file", a crash in the OpenMP runtime). The front ends check their own input first; this is the backstop."""
    try:
        check_context_size(options.context_size)
        check_threads(options.threads)
        check_gpu_layers(options.gpu_layers)
        check_batch_size(options.batch_size)
        check_parallel(options.parallel)
    except OutOfRange as exc:
        raise InvalidOptionError(f"{exc} Change it in the settings or on the command line.") from None


def physical_cores() -> int:
    """The threads llama.cpp gets by default: one per physical core this process may run on. Generation is
    memory-bound and prompt evaluation compute-bound, so hyper-threads only add contention; and a process held to
    fewer CPUs (``taskset``, a container's cpuset) would have its threads wait for each other's turn."""
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):  # Linux; elsewhere every core is this process's
        cores = min(cores, len(os.sched_getaffinity(0)))
    return max(1, cores)


@dataclass(frozen=True)
class LoadPlan:
    """A model file that passed its checks, with the context and memory it will take."""

    gguf: GGUFInfo
    options: LoadOptions
    context_size: int
    gpu_layers: int
    estimate: MemoryEstimate
    needed: int  # bytes of system memory

    @classmethod
    def make(cls, path: str | os.PathLike[str], options: LoadOptions, budget: int | None = None) -> LoadPlan:
        """The plan for ``path``; with ``options.parallel`` automatic, the number of sequences is chosen here
        within ``budget`` bytes (``automatic_parallel``) and the plan's options carry the number chosen."""
        gguf = check_model_file(path)
        # Rendered once on a probe conversation now, before the loaded model is closed: a template that fails,
        # hangs or grows without bound is refused here with a sentence, and the previous model stays.
        checked_template(*template_choice(gguf, options), model_name=gguf.name)
        native = gguf.context_length
        context_size = options.context_size or native or 4096
        if native:
            # Beyond the trained length a model's output degrades into noise; never go there silently.
            context_size = min(context_size, native)
        gpu_layers = options.gpu_layers if gpu_offload_supported() else 0

        def memory(cells: int) -> tuple[MemoryEstimate, int]:
            estimate = estimate_memory(gguf.file_size, ModelShape.from_gguf(gguf), cells, options.batch_size)
            # With layers on a GPU the weights mostly leave system RAM; only count them when they stay here.
            return estimate, estimate.total if gpu_layers == 0 else estimate.total - estimate.weights

        if options.parallel == AUTOMATIC_PARALLEL:
            sequences = automatic_parallel(lambda n: memory(n * context_size)[1], budget)
            context_size *= sequences
            options = dataclasses.replace(options, parallel=sequences, context_size=context_size)
        estimate, needed = memory(context_size)
        return cls(gguf, options, context_size, gpu_layers, estimate, needed)


def automatic_parallel(needed_for: Callable[[int], int], budget: int | None) -> int:
    """The sequences an automatic load gets: the largest of AUTOMATIC_CHOICES whose extra memory (``needed_for``
    N sequences, less one) takes at most AUTOMATIC_MEMORY_SHARE of what ``budget`` leaves free after one; one
    when the budget is unknown or one does not even fit (the load then says so)."""
    if budget is None:
        return 1
    single = needed_for(1)
    spare = budget - single
    for sequences in AUTOMATIC_CHOICES:
        if sequences == 1 or needed_for(sequences) - single <= spare * AUTOMATIC_MEMORY_SHARE:
            return sequences
    return 1


def builtin_template_for(gguf: GGUFInfo, options: LoadOptions) -> str | None:
    """The built-in chat template a model runs with: the one chosen in ``options``, else, for a file with no
    template of its own, the one its architecture was tuned on (``templates.builtin_for_file``); None: the
    file's own."""
    if options.chat_template is not None:
        return options.chat_template
    return None if gguf.chat_template else builtin_for_file(gguf)


def template_choice(gguf: GGUFInfo, options: LoadOptions) -> tuple[str, str | None]:
    """The model's own template, and the built-in used instead of it (``builtin_template_for``)."""
    return gguf.chat_template or "", builtin_template_for(gguf, options)


def template_note(builtin: str | None, *, chosen: bool) -> str:
    if builtin is None:
        return ""
    title = BUILTIN_TEMPLATES[builtin].title
    if chosen:
        return f"using the built-in {title} chat template chosen for it"
    return f"no chat template in the file: using the built-in {title} template"
