"""The engine refuses absurd load options with a sentence, before llama.cpp sees them (the front ends check first;
this is the backstop for any other caller)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.core.errors import InvalidOptionError
from app.core.limits import max_threads
from app.core.llm.engine import Engine
from app.core.llm.load_options import LoadOptions


@pytest.mark.parametrize(
    ("options", "sentence"),
    [
        (LoadOptions(context_size=10), "context size must be 0 (the model's own) or between 256"),
        (LoadOptions(context_size=-5), "context size must be 0"),
        (LoadOptions(context_size=1 << 40), "context size must be 0"),
        (LoadOptions(threads=100_000), "number of threads must be between 0"),
        (LoadOptions(threads=-2), "number of threads must be between 0"),
        (LoadOptions(gpu_layers=-5), "GPU layers"),
        (LoadOptions(batch_size=0), "batch size"),
    ],
)
def test_the_engine_refuses_absurd_load_options(
    model_path: Path, options: LoadOptions, sentence: str
) -> None:
    engine = Engine()
    with pytest.raises(InvalidOptionError, match=re.escape(sentence)) as raised:
        engine.load(model_path, options)
    assert "settings or on the command line" in str(raised.value)
    assert not engine.is_loaded


def test_the_thread_ceiling_follows_this_computer() -> None:
    import os

    assert max_threads() == 2 * (os.cpu_count() or 1)
