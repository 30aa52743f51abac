"""The one owner of a ``llama_cpp.Llama``: load, stream, cancel, keep the context within budget, report stats.

Threading contract: a ``Llama`` is one llama.cpp context and is not thread-safe, so every method here except
``cancel()`` must be called from the single thread that owns the engine (the CLI's main thread, or the
window's engine thread). ``cancel()`` may be called from any thread: it only sets an event that the token
loop checks between tokens and that llama.cpp's abort callback checks while a prompt is being evaluated.
"""

from __future__ import annotations

import codecs
import ctypes
import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import psutil

from app.core.errors import (
    Cancelled,
    ContextOverflowError,
    ModelFileError,
    NoModelLoadedError,
    NotEnoughMemoryError,
    UserError,
)
from app.core.llm.gguf_check import GGUFInfo, check_model_file
from app.core.models.fit import ModelShape, estimate_memory
from app.core.modes import SamplingOptions
from app.core.units import human_bytes

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "cancelled"]

# Used only when a GGUF carries no chat template: ChatML is what most small instruct models were tuned on.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ChatMessage(TypedDict, total=False):
    role: str  # "system" | "user" | "assistant"
    content: str
    pinned: bool  # kept in the context when old turns are dropped (an attached document, say)


@dataclass(frozen=True)
class LoadOptions:
    context_size: int = 4096  # 0: the model's own (trained) context length
    threads: int = 0  # 0: one per physical core, where llama.cpp is fastest on CPUs
    gpu_layers: int = -1  # -1: all; only used when this llama.cpp build can offload
    use_mmap: bool = True
    batch_size: int = 512
    flash_attention: bool = False
    memory_budget: int | None = None  # bytes; None: the memory available right now


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    name: str
    architecture: str
    parameters: int
    native_context: int | None
    context_size: int
    has_chat_template: bool
    file_size: int
    quantization: str
    threads: int
    gpu_layers: int
    load_seconds: float


@dataclass
class ReplyStats:
    prompt_tokens: int = 0  # the whole prompt as sent, after any old turns were dropped
    evaluated_tokens: int = 0  # prompt tokens not found in the cache, so actually computed
    generated_tokens: int = 0
    time_to_first_token: float = 0.0  # seconds from the request to the first token of text
    tokens_per_second: float = 0.0  # generation speed, first token to last
    prompt_tokens_per_second: float = 0.0
    total_seconds: float = 0.0
    finish_reason: FinishReason = "stop"
    dropped_messages: int = 0  # old messages left out to fit the context
    context_size: int = 0

    @property
    def dropped_turns(self) -> int:
        """Turns are user + assistant pairs; a trailing odd message counts as a turn too."""
        return (self.dropped_messages + 1) // 2

    @property
    def context_used(self) -> int:
        return self.prompt_tokens + self.generated_tokens


def physical_cores() -> int:
    """Generation is memory-bound and prompt evaluation compute-bound: hyper-threads only add contention."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def import_backend() -> None:
    """Import llama.cpp's Python bindings now: with numpy and jinja2 they take ~0.3 s.

    The window calls this before it is shown. Left to the first load on the engine thread, the import's long
    steps that hold the interpreter lock (unmarshalling large modules) would stall the window's thread.
    """
    import llama_cpp  # noqa: F401
    from llama_cpp import llama_chat_format  # noqa: F401


def gpu_offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def backend_description() -> str:
    """Which llama.cpp build this is (CPU features, GPU backend), for the About panel and bug reports."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    kind = "GPU offload available" if gpu_offload_supported() else "CPU only"
    return f"llama-cpp-python {llama_cpp.__version__} ({kind}): {text.strip()}"


@dataclass
class _ContextWindow:
    """Which old messages were left out last time, so the next turn keeps the same cut and the cache."""

    dropped_digest: str = ""
    dropped_count: int = 0


@dataclass
class _Prompt:
    tokens: list[int]
    stop: list[str]
    dropped_messages: int
    max_tokens: int


class _RequestCancel:
    """Whether the request under way was stopped: by ``Engine.cancel()`` or by its own event."""

    def __init__(self, engine_event: threading.Event, own: threading.Event | None) -> None:
        self._engine_event = engine_event
        self._own = own

    def is_set(self) -> bool:
        return self._engine_event.is_set() or (self._own is not None and self._own.is_set())

    def cancel(self) -> None:
        self._engine_event.set()


class Reply:
    """A streamed reply: iterate for text pieces; ``stats`` is complete once iteration ends."""

    def __init__(self, pieces: Iterator[str], stats: ReplyStats) -> None:
        self._pieces = pieces
        self.stats = stats
        self.text = ""

    def __iter__(self) -> Iterator[str]:
        for piece in self._pieces:
            self.text += piece
            yield piece

    def collect(self) -> str:
        for _ in self:
            pass
        return self.text


class Engine:
    """Owns one model at a time. See the module docstring for which thread may call what."""

    def __init__(self) -> None:
        self._llama: Any = None
        self._info: ModelInfo | None = None
        self._gguf: GGUFInfo | None = None
        self._formatter: Any = None
        self._cancel_event = threading.Event()
        self._abort_flag = ctypes.create_string_buffer(2)  # see _install_abort_callback
        self._window = _ContextWindow()
        # ctypes callbacks must outlive the C code that holds them.
        self._abort_callback: Any = None
        self.load_fraction = 0.0  # progress of the load under way, readable from any thread
        self._loaded_footprint = 0  # estimated bytes the loaded model holds

    # -- state -------------------------------------------------------------------------------------------

    @property
    def model(self) -> ModelInfo | None:
        return self._info

    @property
    def is_loaded(self) -> bool:
        return self._llama is not None

    @property
    def llama(self) -> Any:
        """The underlying ``Llama``, for the benchmark's raw comparison only. Same thread rules apply."""
        if self._llama is None:
            raise NoModelLoadedError("No model is loaded. Choose a model first.")
        return self._llama

    def cancel(self) -> None:
        """Stop the current load or reply as soon as possible. Safe from any thread."""
        self._cancel_event.set()
        self._abort_flag[0] = b"\x01"

    def clear_cache(self) -> None:
        """Forget the evaluated prompt, so the next request starts cold (benchmarks, a model reset)."""
        self.llama.reset()
        self._window = _ContextWindow()

    def _begin_request(self, cancel: threading.Event | None = None) -> _RequestCancel:
        """A fresh start for the engine's own cancel flag. A caller that queues requests passes each one's own
        event, so a stop pressed while the request was still waiting is not wiped out here."""
        self._cancel_event.clear()
        self._abort_flag[0] = b"\x00"
        request = _RequestCancel(self._cancel_event, cancel)
        if request.is_set():
            self.cancel()  # stopped before it started: make llama.cpp's abort callback see it too
        return request

    # -- loading -----------------------------------------------------------------------------------------

    def load(
        self,
        path: str | os.PathLike[str],
        options: LoadOptions | None = None,
        progress: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> ModelInfo:
        """Validate, check memory, then load. Raises ModelFileError, NotEnoughMemoryError or Cancelled.

        The model loaded before stays loaded until the new one is known to be valid and to fit.
        """
        import llama_cpp

        options = options or LoadOptions()
        cancel_event = self._begin_request(cancel)
        gguf = check_model_file(path)
        native = gguf.context_length
        context_size = options.context_size or native or 4096
        if native:
            # Beyond the trained length a model's output degrades into noise; never go there silently.
            context_size = min(context_size, native)
        threads = options.threads or physical_cores()
        gpu_layers = options.gpu_layers if gpu_offload_supported() else 0
        shape = ModelShape.from_gguf(gguf)

        estimate = estimate_memory(gguf.file_size, shape, context_size, options.batch_size)
        budget = options.memory_budget
        if budget is None:
            # The model loaded now gives its memory back before the new one loads.
            budget = psutil.virtual_memory().available + self._loaded_footprint
        # With layers on a GPU the weights mostly leave system RAM; only count them when they stay here.
        needed = estimate.total if gpu_layers == 0 else estimate.total - estimate.weights
        if needed > budget:
            raise NotEnoughMemoryError(
                f"{gguf.name} needs about {human_bytes(needed)} of memory at a context of {context_size} tokens "
                f"(weights {human_bytes(estimate.weights)}, context cache {human_bytes(estimate.kv_cache)}), but "
                f"only {human_bytes(budget)} is free. Close other programs, choose a smaller context size, "
                "or pick a smaller model or quantization."
            )

        started = time.perf_counter()
        self.load_fraction = 0.0

        def track(fraction: float) -> None:
            self.load_fraction = fraction
            if progress is not None:
                progress(fraction)

        with _load_progress(track, cancel_event):
            try:
                llama = llama_cpp.Llama(
                    model_path=str(gguf.path),
                    n_ctx=context_size,
                    n_batch=options.batch_size,
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_gpu_layers=gpu_layers,
                    use_mmap=options.use_mmap,
                    flash_attn=options.flash_attention,
                    verbose=False,
                )
            except ValueError as exc:
                if cancel_event.is_set():
                    raise Cancelled() from exc
                raise ModelFileError(
                    f"llama.cpp could not load {gguf.path.name} ({exc}). The file may be damaged or made for a "
                    "newer llama.cpp; download it again or update LlamaDesk."
                ) from exc
        if cancel_event.is_set():
            llama.close()
            raise Cancelled()

        self._llama = llama
        self._gguf = gguf
        self._loaded_footprint = needed
        self._install_abort_callback()
        self._formatter = self._make_formatter(gguf)
        self._window = _ContextWindow()
        self._info = ModelInfo(
            path=gguf.path,
            name=gguf.name,
            architecture=gguf.architecture,
            parameters=gguf.parameter_count,
            native_context=native,
            context_size=llama.n_ctx(),
            has_chat_template=gguf.chat_template is not None,
            file_size=gguf.file_size,
            quantization=gguf.quantization,
            threads=threads,
            gpu_layers=gpu_layers,
            load_seconds=time.perf_counter() - started,
        )
        self.load_fraction = 1.0
        if progress:
            progress(1.0)
        return self._info

    def unload(self) -> None:
        if self._llama is not None:
            self._llama.close()
        self._llama = None
        self._loaded_footprint = 0
        self._info = None
        self._gguf = None
        self._formatter = None
        self._abort_callback = None

    def _install_abort_callback(self) -> None:
        """Let llama.cpp's graph computation see a cancel, without calling into Python.

        ggml asks its abort callback between graph nodes, hundreds of times per token. A Python callback
        would take the GIL each time, competing with the GUI thread for it in the middle of every token. So
        the callback is the C library's own ``strlen`` reading a two-byte buffer: "" (length 0, false:
        continue) until ``cancel()`` writes a 1 into it (length 1, true: abort). No Python, no GIL, and it
        only reads memory this engine owns. Where ``strlen`` cannot be found, a Python callback does the job.
        """
        import llama_cpp

        strlen = _c_strlen()
        if strlen is not None:
            self._abort_callback = ctypes.cast(strlen, llama_cpp.ggml_abort_callback)
            data = ctypes.cast(self._abort_flag, ctypes.c_void_p)
        else:
            cancel_event = self._cancel_event

            def should_abort(_data: Any) -> bool:
                return cancel_event.is_set()

            self._abort_callback = llama_cpp.ggml_abort_callback(should_abort)
            data = None
        llama_cpp.llama_set_abort_callback(self._llama._ctx.ctx, self._abort_callback, data)

    def _make_formatter(self, gguf: GGUFInfo) -> Any:
        from llama_cpp import llama_chat_format

        llama = self._llama
        eos_id, bos_id = llama.token_eos(), llama.token_bos()
        eos = llama._model.token_get_text(eos_id) if eos_id != -1 else ""
        bos = llama._model.token_get_text(bos_id) if bos_id != -1 else ""
        template = gguf.chat_template or FALLBACK_CHAT_TEMPLATE
        # Rendered in llama-cpp-python's ImmutableSandboxedEnvironment: templates come from downloaded files.
        return llama_chat_format.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    # -- prompts and the context budget --------------------------------------------------------------------

    def tokenize_messages(self, messages: Sequence[ChatMessage]) -> tuple[list[int], list[str]]:
        """The exact tokens the model sees for ``messages``, ending with the assistant's turn opening."""
        llama = self.llama
        rendered = self._formatter(messages=[{"role": m["role"], "content": m["content"]} for m in messages])
        tokens = llama.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )
        stops = [s for s in (rendered.stop if isinstance(rendered.stop, list) else [rendered.stop]) if s]
        return tokens, stops

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _build_prompt(self, messages: Sequence[ChatMessage], max_tokens: int) -> _Prompt:
        """Fit ``messages`` into the context, dropping the oldest turns in large blocks when needed.

        The system prompt and pinned messages stay first. When a drop is needed, enough is dropped to bring
        the prompt down to half the context, and the same cut is kept on later turns: the prompt's start then
        stays the same for many turns, so llama.cpp's prefix cache keeps serving it.
        """
        if not messages:
            raise ValueError("a conversation needs at least one message")
        n_ctx = int(self.llama.n_ctx())
        reserve = max(1, min(max_tokens, n_ctx // 4))
        kept_first = [
            m for i, m in enumerate(messages) if m.get("pinned") or (m["role"] == "system" and i == 0)
        ]
        droppable = [
            m for i, m in enumerate(messages) if not (m.get("pinned") or (m["role"] == "system" and i == 0))
        ]
        last = len(droppable) - 1  # the newest message is never dropped

        def attempt(cut: int) -> tuple[list[int], list[str]]:
            return self.tokenize_messages([*kept_first, *droppable[cut:]])

        def fits(tokens: list[int], limit: int) -> bool:
            return len(tokens) + reserve <= limit

        # Cuts fall on user messages, so a reply never appears without its question.
        cuts = [i for i, m in enumerate(droppable) if m["role"] == "user" and i <= last] or [max(0, last)]
        if cuts[0] != 0:
            cuts.insert(0, 0)

        start = 0
        previous = self._window.dropped_count
        if previous and previous <= last and _digest(droppable[:previous]) == self._window.dropped_digest:
            start = previous
        tokens, stops = attempt(start)
        cut = start
        if not fits(tokens, n_ctx):
            candidates = [c for c in cuts if c > start]
            low_water = n_ctx // 2
            chosen: tuple[int, list[int], list[str]] | None = None
            for candidate in candidates:
                candidate_tokens, candidate_stops = attempt(candidate)
                if fits(candidate_tokens, low_water):
                    chosen = (candidate, candidate_tokens, candidate_stops)
                    break
                if fits(candidate_tokens, n_ctx) and chosen is None:
                    chosen = (candidate, candidate_tokens, candidate_stops)
            if chosen is None:
                newest = self.count_tokens(droppable[last]["content"]) if droppable else 0
                raise ContextOverflowError(
                    f"This message is about {newest} tokens, too long for the model's context of {n_ctx} tokens "
                    "with room for a reply. Shorten it, attach it as a document instead, or raise the context "
                    "size in Settings."
                )
            cut, tokens, stops = chosen
        self._window = _ContextWindow(_digest(droppable[:cut]), cut)
        room = n_ctx - len(tokens)
        return _Prompt(tokens, stops, cut, max(1, min(max_tokens, room)))

    # -- generation ----------------------------------------------------------------------------------------

    def chat(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingOptions | None = None,
        cancel: threading.Event | None = None,
    ) -> Reply:
        """Start a streamed reply to ``messages``. Iterate the result for text; read ``stats`` afterwards.

        Raises UserError before streaming starts (no model, message too long); once streaming, a cancel ends
        the reply with ``finish_reason == "cancelled"`` and what was generated so far.
        """
        sampling = sampling or SamplingOptions()
        cancel_event = self._begin_request(cancel)
        requested = time.perf_counter()
        prompt = self._build_prompt(messages, sampling.max_tokens)
        stats = ReplyStats(
            prompt_tokens=len(prompt.tokens),
            dropped_messages=prompt.dropped_messages,
            context_size=self.llama.n_ctx(),
        )
        stats.evaluated_tokens = self._tokens_to_evaluate(prompt.tokens)
        return Reply(self._stream(prompt, sampling, stats, cancel_event, requested), stats)

    def _tokens_to_evaluate(self, tokens: list[int]) -> int:
        """What ``Llama.generate`` will compute: everything after the longest cached prefix (at least one)."""
        llama = self.llama
        cached = llama._input_ids.tolist() if llama.n_tokens else []
        prefix = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            prefix += 1
        if prefix == len(tokens):
            prefix -= 1  # llama.cpp re-evaluates the last token to get fresh logits
        return len(tokens) - max(0, prefix)

    def _stream(
        self,
        prompt: _Prompt,
        sampling: SamplingOptions,
        stats: ReplyStats,
        cancel_event: _RequestCancel,
        requested: float,
    ) -> Iterator[str]:
        import llama_cpp

        llama = self.llama
        vocab = llama._model.vocab
        if sampling.seed is not None:
            llama.set_seed(sampling.seed)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        held = ""  # text that might be the start of a stop string
        longest_stop = max((len(s) for s in prompt.stop), default=0)
        first_token_at: float | None = None
        prompt_done_at: float | None = None
        finish: FinishReason = "length"
        generated: list[int] = []
        previous: list[int] = list(prompt.tokens)
        tokens = llama.generate(
            prompt.tokens,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
        )
        try:
            while True:
                if cancel_event.is_set():
                    finish = "cancelled"
                    break
                try:
                    token = next(tokens)
                except StopIteration:
                    finish = "stop"
                    break
                except RuntimeError:
                    if cancel_event.is_set():  # llama_decode aborted by our callback
                        finish = "cancelled"
                        break
                    raise
                if prompt_done_at is None:
                    prompt_done_at = time.perf_counter()
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                generated.append(token)
                piece = decoder.decode(llama.detokenize([token], prev_tokens=previous))
                previous.append(token)
                if piece:
                    if first_token_at is None:
                        first_token_at = time.perf_counter()
                        stats.time_to_first_token = first_token_at - requested
                    if longest_stop:
                        held += piece
                        stop_at = _find_stop(held, prompt.stop)
                        if stop_at is not None:
                            if held[:stop_at]:
                                yield held[:stop_at]
                            held = ""
                            finish = "stop"
                            break
                        safe = len(held) - (longest_stop - 1)
                        if safe > 0:
                            yield held[:safe]
                            held = held[safe:]
                    else:
                        yield piece
                stats.generated_tokens = len(generated)
                if len(generated) >= prompt.max_tokens:
                    finish = "length"
                    break
            tail = held + decoder.decode(b"", final=True)
            if (tail and finish != "stop") or (tail and _find_stop(tail, prompt.stop) is None):
                yield tail
        finally:
            tokens.close()
            done = time.perf_counter()
            stats.generated_tokens = len(generated)
            stats.finish_reason = finish
            stats.total_seconds = done - requested
            if prompt_done_at is not None:
                eval_seconds = prompt_done_at - requested
                if eval_seconds > 0:
                    stats.prompt_tokens_per_second = stats.evaluated_tokens / eval_seconds
                if len(generated) > 1 and done > prompt_done_at:
                    stats.tokens_per_second = (len(generated) - 1) / (done - prompt_done_at)
            if first_token_at is None:
                stats.time_to_first_token = done - requested


def _c_strlen() -> Any:
    """The C library's ``strlen``, or None where it cannot be found."""
    try:
        libc = ctypes.cdll.msvcrt if sys.platform == "win32" else ctypes.CDLL(None)
        return libc.strlen
    except (OSError, AttributeError):
        return None


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    positions = [text.find(s) for s in stops if s and s in text]
    return min(positions) if positions else None


def _digest(messages: Sequence[ChatMessage]) -> str:
    hasher = hashlib.sha256()
    for message in messages:
        hasher.update(message["role"].encode())
        hasher.update(b"\0")
        hasher.update(message["content"].encode("utf-8", "replace"))
        hasher.update(b"\0")
    return hasher.hexdigest()


@contextmanager
def _load_progress(progress: Callable[[float], None] | None, cancel_event: _RequestCancel) -> Iterator[None]:
    """Report llama.cpp's load progress and let a cancel abort the load.

    ``Llama()`` takes no progress callback, but it builds its model parameters from
    ``llama_model_default_params()``; for the duration of one load (the engine loads one model at a time) the
    defaults are swapped for ones carrying our callback.
    """
    import llama_cpp
    import llama_cpp.llama_cpp as bindings  # the module whose defaults Llama() reads

    def on_progress(fraction: float, _data: Any) -> bool:
        try:
            if progress is not None:
                progress(min(0.99, max(0.0, fraction)))
        except KeyboardInterrupt:
            # Ctrl+C lands here when it arrives during the load; ctypes would swallow it and llama.cpp would
            # report a failed load ("damaged file"). Turn it into the cancel it is.
            cancel_event.cancel()
        except Exception:  # a broken listener must not abort a load from inside C
            log.exception("load progress listener failed")
        return not cancel_event.is_set()

    callback = llama_cpp.llama_progress_callback(on_progress)
    original = getattr(bindings, "llama_model_default_params")  # noqa: B009

    def params_with_progress() -> Any:
        params = original()
        params.progress_callback = callback
        params.progress_callback_user_data = ctypes.c_void_p(0)
        return params

    setattr(bindings, "llama_model_default_params", params_with_progress)  # noqa: B010
    try:
        yield
    finally:
        setattr(bindings, "llama_model_default_params", original)  # noqa: B010


__all__ = [
    "ChatMessage",
    "Engine",
    "LoadOptions",
    "ModelInfo",
    "Reply",
    "ReplyStats",
    "UserError",
    "backend_description",
    "gpu_offload_supported",
    "physical_cores",
]
