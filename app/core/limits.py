"""The ranges every option and setting must fall in, each check raising OutOfRange with a sentence.

One set of checks serves the command line (usage errors), settings.json (a bad value falls back to its default),
the mode presets and the engine (which refuses absurd load options before llama.cpp sees them). A value outside
these ranges does not fail gracefully inside llama.cpp: a context of 10 tokens raises from deep inside the
bindings, a negative one is read as a damaged file, and 100,000 threads crash the OpenMP runtime.
"""

from __future__ import annotations

import math
import os

MIN_CONTEXT = 256
# n_ctx is a 32-bit field in llama.cpp, and no model is trained on more than a few million tokens; the trained
# length of the model itself is the real ceiling, applied when its file has been read.
MAX_CONTEXT = 1 << 24
MAX_REPLY_TOKENS = 131_072
MAX_TEMPERATURE = 5.0
MAX_GPU_LAYERS = 10_000
MAX_BATCH_SIZE = 1 << 16
MAX_SYSTEM_PROMPT_CHARS = 100_000


class OutOfRange(ValueError):
    """A value outside its range; the message is a sentence for the person who chose it."""


def max_threads() -> int:
    """Twice the logical cores: more only adds contention, and thousands exhaust the OpenMP runtime."""
    return 2 * (os.cpu_count() or 1)


def _integer(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OutOfRange(f"The {what} must be a whole number, not {value!r}.")
    return value


def _real(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OutOfRange(f"The {what} must be a number, not {value!r}.")
    number = float(value)
    if not math.isfinite(number):
        raise OutOfRange(f"The {what} must be a finite number, not {value!r}.")
    return number


def check_context_size(value: object) -> int:
    size = _integer(value, "context size")
    if size != 0 and not MIN_CONTEXT <= size <= MAX_CONTEXT:
        raise OutOfRange(
            f"The context size must be 0 (the model's own) or between {MIN_CONTEXT:,} and {MAX_CONTEXT:,} "
            f"tokens, not {size:,}; 4096 suits most conversations."
        )
    return size


def check_threads(value: object) -> int:
    threads = _integer(value, "number of threads")
    if not 0 <= threads <= max_threads():
        raise OutOfRange(
            f"The number of threads must be between 0 (one per physical core) and {max_threads()} (twice this "
            f"computer's {os.cpu_count() or 1} logical cores), not {threads:,}."
        )
    return threads


def check_gpu_layers(value: object) -> int:
    layers = _integer(value, "number of GPU layers")
    if not -1 <= layers <= MAX_GPU_LAYERS:
        raise OutOfRange(
            f"The number of GPU layers must be -1 (all), 0 (none) or up to {MAX_GPU_LAYERS:,}, not {layers:,}."
        )
    return layers


def check_batch_size(value: object) -> int:
    batch = _integer(value, "batch size")
    if not 1 <= batch <= MAX_BATCH_SIZE:
        raise OutOfRange(f"The batch size must be between 1 and {MAX_BATCH_SIZE:,} tokens, not {batch:,}.")
    return batch


def check_max_tokens(value: object) -> int:
    tokens = _integer(value, "longest reply")
    if not 1 <= tokens <= MAX_REPLY_TOKENS:
        raise OutOfRange(
            f"The longest reply must be between 1 and {MAX_REPLY_TOKENS:,} tokens, not {tokens:,}."
        )
    return tokens


def check_temperature(value: object) -> float:
    temperature = _real(value, "temperature")
    if not 0 <= temperature <= MAX_TEMPERATURE:
        raise OutOfRange(
            f"The temperature must be between 0 (always the most likely word) and {MAX_TEMPERATURE:g}, "
            f"not {temperature:g}; 0.7 is usual for chat."
        )
    return temperature


def check_top_p(value: object) -> float:
    top_p = _real(value, "top-p")
    if not 0 < top_p <= 1:
        raise OutOfRange(f"The top-p must be above 0 and at most 1, not {top_p:g}; 0.95 is usual.")
    return top_p


def check_system_prompt(value: object) -> str:
    if not isinstance(value, str):
        raise OutOfRange(f"The system prompt must be text, not {value!r}.")
    if len(value) > MAX_SYSTEM_PROMPT_CHARS:
        raise OutOfRange(
            f"The system prompt must be at most {MAX_SYSTEM_PROMPT_CHARS:,} characters, not {len(value):,}."
        )
    return value


def check_count(value: object) -> int:
    """How many results to show: at least one."""
    count = _integer(value, "number of results")
    if count < 1:
        raise OutOfRange(f"The number of results must be at least 1, not {count:,}.")
    return count


MAX_SAVED_STATES_MB = 1 << 20  # 1 TB: beyond any disk this would be set on


def check_saved_states_mb(value: object) -> int:
    """The disk space saved states may take, in MB; 0 keeps none on disk."""
    megabytes = _integer(value, "space for saved states")
    if not 0 <= megabytes <= MAX_SAVED_STATES_MB:
        raise OutOfRange(
            f"The space for saved states must be between 0 and {MAX_SAVED_STATES_MB:,} MB, not {megabytes:,}."
        )
    return megabytes
