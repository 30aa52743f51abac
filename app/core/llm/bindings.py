"""Everything that reaches past llama-cpp-python's public API, in one place.

llama-cpp-python exposes no load-progress callback, no abort callback, no way to read the cached prompt and no
way to read its special tokens' texts through ``Llama`` itself. Each workaround below relies on an
internal of the bindings (named in its docstring); a new bindings version that moves one breaks only this module,
and its tests say which piece.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

log = logging.getLogger(__name__)


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...

    def cancel(self) -> None: ...


def import_backend() -> None:
    """Import llama.cpp's Python bindings now: with numpy and jinja2 they take ~0.3 s.

    The window calls this before it is shown. Left to the first load on the engine thread, the import's long
    steps that hold the interpreter lock (unmarshalling large modules) would stall the window's thread.
    """
    import llama_cpp  # noqa: F401
    from llama_cpp import llama_chat_format  # noqa: F401

    route_native_logs()


# llama.cpp's log levels (enum ggml_log_level in today's ggml.h: NONE, DEBUG, INFO, WARN, ERROR, CONT; the map in
# llama-cpp-python's own _logger predates the reordering); CONT continues the previous line at its level.
_NATIVE_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_NATIVE_CONTINUE = 5
native_log = logging.getLogger("app.llama_cpp")
# Without any handler configured (the CLI), logging's last resort would print warnings to stderr: the leak again.
native_log.addHandler(logging.NullHandler())
_native_callback: Any = None  # ctypes callbacks must outlive the C code that holds them
_native_lock = threading.Lock()
_native_pending: list[str] = []
_native_level = logging.DEBUG


def route_native_logs() -> None:
    """Send llama.cpp's own log lines to our log instead of the terminal, once per process.

    llama-cpp-python installs a callback that prints them to stderr ("decode: removing memory module entries
    ..." reached the person's terminal in the middle of a reply). Ours hands each whole line to ``native_log``:
    llama.cpp's errors and warnings as warnings (the person sees our own sentence, not its text), the rest as
    debug. Lines arrive in pieces (CONT), so pieces are joined until the newline.
    """
    global _native_callback
    with _native_lock:
        if _native_callback is not None:
            return
        import llama_cpp

        def on_native_log(level: int, text: bytes | None, _data: Any) -> None:
            with contextlib.suppress(Exception):  # nothing may raise inside a C callback
                _native_line(level, (text or b"").decode("utf-8", "replace"))

        _native_callback = llama_cpp.llama_log_callback(on_native_log)
        llama_cpp.llama_log_set(_native_callback, ctypes.c_void_p(0))


# What llama.cpp logs as warnings when a decode is stopped on purpose (our abort callback, on Stop): the
# compute status 1 and decode's 2 both mean "aborted"; the memory entries of the cut batch are then removed.
# Expected after every Stop, so they are logged as debug, not as warnings of trouble.
_ABORTED_LINE = re.compile(r"failed with error 1$|compute status: 1$|failed to decode, ret = 2$")
_AFTER_ABORT_LINE = "removing memory module entries"
_native_aborting = False


def _native_line(level: int, text: str) -> None:
    global _native_level, _native_aborting
    if level != _NATIVE_CONTINUE:
        python_level = _NATIVE_LEVELS.get(level, logging.DEBUG)
        _native_level = logging.WARNING if python_level >= logging.WARNING else logging.DEBUG
    _native_pending.append(text)
    if not text.endswith("\n"):
        return
    line = "".join(_native_pending).strip()
    _native_pending.clear()
    if not line:
        return
    line_level = _native_level
    if _ABORTED_LINE.search(line) or (_native_aborting and _AFTER_ABORT_LINE in line):
        line_level = logging.DEBUG
        _native_aborting = not line.endswith("ret = 2")  # decode's own line ends the sequence
    native_log.log(line_level, "llama.cpp: %s", line)


def gpu_offload_supported() -> bool:
    import llama_cpp

    route_native_logs()  # the first call into llama.cpp sets up its backends, which log

    return bool(llama_cpp.llama_supports_gpu_offload())


def system_info() -> str:
    """llama.cpp's own line on this build: CPU features switched on ("AVX2 = 1 | FMA = 1 | ..."), backends."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    return (info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)).strip()


def backend_description() -> str:
    """Which llama.cpp build this is (CPU features, GPU backend), for the About panel and bug reports."""
    import llama_cpp

    kind = "GPU offload available" if gpu_offload_supported() else "CPU only"
    return f"llama-cpp-python {llama_cpp.__version__} ({kind}): {system_info()}"


class AbortSwitch:
    """Lets llama.cpp's graph computation see a cancel, without calling into Python.

    ggml asks its abort callback between graph nodes, hundreds of times per token. A Python callback would take
    the GIL each time, competing with the GUI thread for it in the middle of every token. So the callback is the
    C library's own ``strlen`` reading a two-byte buffer: "" (length 0, false: continue) until ``trip()`` writes
    a 1 into it (length 1, true: abort). No Python, no GIL, and it only reads memory this object owns. Where
    ``strlen`` cannot be found, a Python callback reading ``fallback`` does the job.

    Internal used: ``Llama._ctx.ctx``, the raw context pointer ``llama_set_abort_callback`` needs.
    """

    def __init__(self, fallback: threading.Event) -> None:
        self._flag = ctypes.create_string_buffer(2)
        self._fallback = fallback
        self._callback: Any = None  # ctypes callbacks must outlive the C code that holds them

    def trip(self) -> None:
        self._flag[0] = b"\x01"

    def reset(self) -> None:
        self._flag[0] = b"\x00"

    def install(self, llama: Any) -> None:
        import llama_cpp

        strlen = _c_strlen()
        if strlen is not None:
            self._callback = ctypes.cast(strlen, llama_cpp.ggml_abort_callback)
            data = ctypes.cast(self._flag, ctypes.c_void_p)
        else:
            fallback = self._fallback

            def should_abort(_data: Any) -> bool:
                return fallback.is_set()

            self._callback = llama_cpp.ggml_abort_callback(should_abort)
            data = None
        llama_cpp.llama_set_abort_callback(llama._ctx.ctx, self._callback, data)

    def release(self) -> None:
        self._callback = None


def _c_strlen() -> Any:
    """The C library's ``strlen``, or None where it cannot be found."""
    try:
        libc = ctypes.cdll.msvcrt if sys.platform == "win32" else ctypes.CDLL(None)
        return libc.strlen
    except (OSError, AttributeError):
        return None


@contextmanager
def load_progress(progress: Callable[[float], None] | None, cancel: CancelFlag) -> Iterator[None]:
    """Report llama.cpp's load progress and let a cancel abort the load.

    ``Llama()`` takes no progress callback, but it builds its model parameters from
    ``llama_cpp.llama_cpp.llama_model_default_params()``; for the duration of one load (the engine loads one
    model at a time) the defaults are swapped for ones carrying our callback.
    """
    import llama_cpp

    route_native_logs()  # the CLI and the tests load without import_backend()

    def on_progress(fraction: float, _data: Any) -> bool:
        try:
            if progress is not None:
                progress(min(0.99, max(0.0, fraction)))
        except KeyboardInterrupt:
            # Ctrl+C lands here when it arrives during the load; ctypes would swallow it and llama.cpp would
            # report a failed load ("damaged file"). Turn it into the cancel it is.
            cancel.cancel()
        except Exception:  # a broken listener must not abort a load from inside C
            log.exception("load progress listener failed")
        return not cancel.is_set()

    callback = llama_cpp.llama_progress_callback(on_progress)

    def with_progress(params: Any) -> None:
        params.progress_callback = callback
        params.progress_callback_user_data = ctypes.c_void_p(0)

    with _defaults_adjusted("llama_model_default_params", with_progress):
        yield


@contextmanager
def _defaults_adjusted(name: str, adjust: Callable[[Any], None]) -> Iterator[None]:
    """For the duration of the block, the parameters ``llama_cpp.llama_cpp.<name>()`` returns (the defaults
    ``Llama()`` builds its own from, for what it takes no argument for) are passed through ``adjust`` first."""
    import llama_cpp.llama_cpp as raw  # the module whose defaults Llama() reads

    original = getattr(raw, name)

    def adjusted() -> Any:
        params = original()
        adjust(params)
        return params

    setattr(raw, name, adjusted)
    try:
        yield
    finally:
        setattr(raw, name, original)


def special_token_texts(llama: Any) -> tuple[str, str]:
    """The model's BOS and EOS as text, for its chat template. Internal used: ``Llama._model.token_get_text``."""
    eos_id, bos_id = llama.token_eos(), llama.token_bos()
    eos = llama._model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = llama._model.token_get_text(bos_id) if bos_id != -1 else ""
    return str(bos), str(eos)


def cached_tokens(llama: Any) -> list[int]:
    """The tokens whose evaluation llama.cpp holds in its cache. Internal used: ``Llama._input_ids``."""
    return list(llama._input_ids.tolist()) if llama.n_tokens else []


def evaluate_prompt(
    llama: Any,
    tokens: list[int],
    progress: Callable[[int, int], None] | None,
    cancelled: Callable[[], bool],
) -> bool:
    """Evaluate ``tokens`` after the longest prefix llama.cpp holds, all but the last, in batches of n_batch,
    calling ``progress(done, total)`` after each (``total`` counts the last token too; ``Llama.generate`` then
    evaluates only that one, as it finds the rest cached). Returns False if ``cancelled()`` turned true between
    batches; llama.cpp's abort callback stops a batch under way (``Llama.eval`` raises). Internal used:
    ``Llama.n_tokens``, which ``Llama.eval`` continues from, and ``Llama._ctx.kv_cache_seq_rm``."""
    cached = cached_tokens(llama)
    prefix = 0
    for held, wanted in zip(cached, tokens[:-1], strict=False):
        if held != wanted:
            break
        prefix += 1
    total = len(tokens) - prefix
    if total <= 1:
        return True
    if prefix and not llama._ctx.kv_cache_seq_rm(-1, prefix, -1):
        prefix, total = 0, len(tokens)  # this cache cannot drop a suffix: evaluate it all
    llama.n_tokens = prefix  # Llama.eval drops the cache from here and continues
    batch = max(1, int(llama.n_batch))
    end = len(tokens) - 1
    for start in range(prefix, end, batch):
        llama.eval(tokens[start : min(end, start + batch)])
        if progress is not None:
            progress(min(end, start + batch) - prefix, total)
        if cancelled():
            return False
    return True


def evaluate_rest(llama: Any, tokens: list[int]) -> None:
    """Evaluate what of ``tokens`` the cache does not hold, and always the last one: its logits are what the
    first token is drawn from (a cache holding the whole prompt holds no logits for it). Internals used as in
    ``evaluate_prompt``."""
    cached = cached_tokens(llama)
    prefix = 0
    for held, wanted in zip(cached, tokens[:-1], strict=False):
        if held != wanted:
            break
        prefix += 1
    if prefix and not llama._ctx.kv_cache_seq_rm(-1, prefix, -1):
        prefix = 0  # this cache cannot drop a suffix: evaluate it all
        llama.reset()
    llama.n_tokens = prefix
    llama.eval(tokens[prefix:])


def fill_in_the_middle_tokens(llama: Any) -> tuple[int, int, int] | None:
    """The model's fill-in-the-middle tokens (prefix, suffix, middle), or None when it has none. Internal used:
    ``Llama._model.vocab``."""
    import llama_cpp

    vocab = llama._model.vocab
    found = (
        int(llama_cpp.llama_vocab_fim_pre(vocab)),
        int(llama_cpp.llama_vocab_fim_suf(vocab)),
        int(llama_cpp.llama_vocab_fim_mid(vocab)),
    )
    return None if -1 in found else found


def end_of_generation(llama: Any) -> Callable[[int], bool]:
    """A test for end-of-generation tokens (EOS, EOT, ...). Internal used: ``Llama._model.vocab``."""
    import llama_cpp

    vocab = llama._model.vocab
    return lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token))


def sequence_state(llama: Any) -> tuple[list[int], bytearray]:
    """The tokens llama.cpp holds and their KV cache (sequence 0, the only one ``Llama`` uses), copied once.

    Cells past ``n_tokens`` (left by a decode that was aborted) are removed first, so the bytes hold exactly the
    tokens returned. Internals used: ``Llama._input_ids``, ``Llama._ctx`` (the raw context and its
    ``kv_cache_seq_rm``)."""
    import llama_cpp

    tokens = cached_tokens(llama)
    # Sequence 0 only: the batched loop's other sequences may keep their cells (app.core.llm.batched).
    llama._ctx.kv_cache_seq_rm(0, len(tokens), -1)
    if not tokens:
        return [], bytearray()
    ctx = llama._ctx.ctx
    size = int(llama_cpp.llama_state_seq_get_size(ctx, 0))
    data = bytearray(size)
    buffer = (ctypes.c_uint8 * size).from_buffer(data)
    written = int(llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0))
    del buffer  # a bytearray cannot be resized (nor sliced below) while a ctypes view of it exists
    if written != size:
        del data[written:]
    return tokens, data


def restore_sequence_state(llama: Any, tokens: list[int], data: bytearray) -> bool:
    """Put a saved state back and tell ``Llama`` which tokens it now holds, so ``Llama.generate``'s own prefix
    match evaluates only what follows them. False (the cache left empty) if llama.cpp refuses the bytes.

    Internals used: ``Llama.input_ids``, ``n_tokens`` and ``_requires_eval`` (set as ``Llama.load_state`` sets
    them: the logits of the last token are not restored, so generate() re-evaluates it)."""
    import llama_cpp

    llama.reset()
    # Sequence 0 only: the batched loop's other sequences keep their cells (app.core.llm.batched).
    llama._ctx.kv_cache_seq_rm(0, 0, -1)
    if not tokens or len(tokens) > llama.n_ctx():
        return False
    buffer = (ctypes.c_uint8 * len(data)).from_buffer(data)
    try:
        loaded = int(llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, buffer, len(data), 0))
    finally:
        del buffer
    if loaded == 0:
        llama._ctx.kv_cache_seq_rm(0, 0, -1)
        return False
    llama.input_ids[: len(tokens)] = tokens
    llama.n_tokens = len(tokens)
    llama._requires_eval = True
    return True


def cache_settings(llama: Any) -> tuple[int, int, int]:
    """The KV cache's key type, value type and flash-attention mode, which a saved state's layout depends on.
    Internal used: ``Llama.context_params``."""
    params = llama.context_params
    return int(params.type_k), int(params.type_v), int(params.flash_attn_type)


@contextmanager
def parallel_sequences(sequences: int) -> Iterator[None]:
    """Make the ``Llama`` created inside the block hold ``sequences`` sequences (``n_seq_max``), each in its own
    share of the KV cache (``kv_unified`` off, as llama-server splits it by default); with 1 nothing changes.

    ``Llama()`` takes neither setting: it builds its context parameters from
    ``llama_cpp.llama_cpp.llama_context_default_params()``, so for the duration of one load the defaults are
    swapped for ones carrying them, as ``load_progress`` does for the model's. Split, not unified: a token then
    attends only to its own sequence's cells, where in one shared cache it computes over every sequence's and
    masks the others' (with 4 streams writing, that made the window's prompt the slowest part of its turn).
    llama.cpp rounds each share up to a multiple of 256 cells; ``n_ctx()`` is then the shares together, and every
    request, on the batched loop (``app.core.llm.batched``) and on the engine's own path alike, keeps within its
    share (``Engine.sequence_context``).
    """
    if sequences <= 1:
        yield
        return

    def with_sequences(params: Any) -> None:
        params.n_seq_max = sequences
        params.kv_unified = False

    with _defaults_adjusted("llama_context_default_params", with_sequences):
        yield


def evaluate_rows(llama: Any, tokens: list[int]) -> None:
    """Evaluate ``tokens`` after those llama.cpp holds, in one batch with logits for every row (``Llama.eval``
    keeps only the last row's without ``logits_all``), so a draft is verified in one pass: row ``i``'s logits
    are read with ``llama_get_logits_ith(ctx, i)`` until the next evaluation. ``tokens`` must fit one batch
    (``n_batch``). Internals used: ``Llama._batch`` (its ``LlamaBatch.set_batch``), ``Llama._ctx.decode`` and
    ``kv_cache_seq_rm``, ``Llama.input_ids`` and ``Llama.n_tokens`` (kept as ``Llama.eval`` keeps them, so the
    prefix reuse and saved states read the cache right)."""
    if len(tokens) > int(llama.n_batch):
        raise ValueError(f"{len(tokens)} tokens do not fit one batch of {llama.n_batch}")
    n_past = int(llama.n_tokens)
    llama._ctx.kv_cache_seq_rm(-1, n_past, -1)
    llama._batch.set_batch(batch=tokens, n_past=n_past, logits_all=True)
    llama._ctx.decode(llama._batch)
    llama.input_ids[n_past : n_past + len(tokens)] = tokens
    llama.n_tokens = n_past + len(tokens)
    llama._requires_eval = False


def forget_after(llama: Any, kept: int) -> None:
    """Keep only the first ``kept`` tokens in the cache (a rejected draft's cells go). Internals used:
    ``Llama._ctx.kv_cache_seq_rm`` and ``Llama.n_tokens``."""
    llama._ctx.kv_cache_seq_rm(-1, kept, -1)
    llama.n_tokens = kept
