"""``llamadesk bench --predict``: the model menu's speed prediction checked against real runs.

For each real model at hand (SmolLM2-135M, the starter model, and Gemma 3 270M from the test extra) the
prediction is made first, as the menu makes it for a file that has never run here: from the measured memory
bandwidth alone, and with the speeds this machine has measured for *other* files. Then the model is loaded and
generates ``TOKENS`` tokens ``REPEATS`` times; each run records how much of the CPU other processes held
meanwhile, and the measured figure is the median of the quiet runs (of all runs, flagged busy, when none was
quiet). The ratio measured / predicted is the figure to watch (goal: 0.7 to 1.3 on a quiet machine).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from app.core.errors import UserError
from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine
from app.core.llm.load_options import LoadOptions
from app.core.models.hardware import probe_hardware
from app.core.models.measured import (
    BUSY_SHARE_LIMIT,
    CpuWindow,
    SpeedRecord,
    measured_speeds,
    speed_key,
)
from app.core.models.speed import bandwidth_share, predict_speed
from app.core.modes import SamplingOptions
from app.core.paths import app_paths

TOKENS = 96
REPEATS = 5
_PROMPT: list[ChatMessage] = [
    {"role": "user", "content": "Write a long story about a lighthouse keeper who finds a map in a bottle."}
]


@dataclass
class PredictionCheck:
    model: str
    file_size: int
    bandwidth: float
    bandwidth_share: float  # of each token's predicted time spent reading weights
    predicted_estimated: float  # from the bandwidth alone
    predicted_menu: float  # as the menu predicts it, with other files' measurements
    predicted_basis: str
    measured: float  # median tokens/s of the quiet runs (all runs when none was quiet)
    runs: list[float]
    tokens: int  # generated per run
    busy_shares: list[float | None]
    quiet_runs: int

    @property
    def ratio(self) -> float:
        return self.measured / self.predicted_menu if self.predicted_menu else 0.0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ratio": self.ratio}

    def report(self) -> str:
        busy = [f"{share:.0%}" if share is not None else "?" for share in self.busy_shares]
        caveat = "" if self.quiet_runs else "  (no quiet run: the machine was busy, the ratio says little)"
        return "\n".join(
            [
                f"{self.model} ({self.file_size / 1e6:.0f} MB, {self.bandwidth_share:.0%} of a token's time "
                f"reading weights at {self.bandwidth / 1e9:.1f} GB/s)",
                f"  predicted before running: {self.predicted_menu:.1f} tokens/s ({self.predicted_basis}; "
                f"bandwidth alone {self.predicted_estimated:.1f})",
                f"  measured: {self.measured:.1f} tokens/s, median of {self.quiet_runs or len(self.runs)} "
                f"runs of {self.tokens} tokens (all runs: {', '.join(f'{r:.1f}' for r in self.runs)}; "
                f"CPU held by other processes: {', '.join(busy)})",
                f"  measured / predicted = {self.ratio:.2f}   (goal 0.7 to 1.3 on a quiet machine){caveat}",
            ]
        )


def real_models() -> list[Path]:
    """The two real models the tests use: the starter model and Gemma 3 270M (joined into the cache once)."""
    from app.bench.gemma import assemble_gemma
    from app.core.models.inventory import starter_model_path

    starter = starter_model_path()
    if starter is None:
        raise UserError(
            "The starter model is not installed: llamadesk models starter (or pip install -e '.[test]')."
        )
    return [starter, assemble_gemma(app_paths().cache_dir / "bench-models")]


def _measure(engine: Engine, repeats: int, tokens: int) -> tuple[list[float], list[float | None]]:
    runs: list[float] = []
    shares: list[float | None] = []
    for _ in range(repeats):
        engine.clear_cache()
        window = CpuWindow.start()
        reply = engine.chat(_PROMPT, SamplingOptions(temperature=0.0, max_tokens=tokens))
        reply.collect()
        shares.append(window.busy_share())
        runs.append(reply.stats.tokens_per_second)
    return runs, shares


def check_prediction(
    path: Path,
    *,
    bandwidth: float,
    records: Sequence[SpeedRecord] = (),
    repeats: int = REPEATS,
    tokens: int = TOKENS,
) -> PredictionCheck:
    """Predict ``path``'s speed as for a file never run here (its own records are set aside), then measure."""
    size = path.stat().st_size
    key = speed_key(path)
    others = [record for record in records if record.key != key]
    estimated = predict_speed(size, bandwidth)
    menu = predict_speed(size, bandwidth, others, key)
    assert estimated.tokens_per_second is not None and menu.tokens_per_second is not None
    engine = Engine()
    engine.load(path, LoadOptions(context_size=1024))
    # A file new here is hashed for its saved states, competing with the runs: measure once that is done.
    engine.states.wait_for_signature(600)
    try:
        runs, shares = _measure(engine, repeats, tokens)
    finally:
        engine.unload()
    quiet = [
        tps
        for tps, share in zip(runs, shares, strict=True)
        if share is not None and share <= BUSY_SHARE_LIMIT
    ]
    return PredictionCheck(
        model=path.name,
        file_size=size,
        bandwidth=bandwidth,
        bandwidth_share=bandwidth_share(size, bandwidth),
        predicted_estimated=estimated.tokens_per_second,
        predicted_menu=menu.tokens_per_second,
        predicted_basis=menu.basis.value,
        measured=statistics.median(quiet or runs),
        runs=runs,
        tokens=tokens,
        busy_shares=shares,
        quiet_runs=len(quiet),
    )


def run_prediction_benchmark(
    models: Sequence[Path] | None = None, progress: Callable[[str], None] | None = None
) -> list[PredictionCheck]:
    say = progress or (lambda _line: None)
    hardware = probe_hardware()
    if not hardware.memory_bandwidth:
        raise UserError(
            "The memory bandwidth could not be measured here, so there is no prediction to check."
        )
    records = measured_speeds()
    checks = []
    for path in models if models is not None else real_models():
        say(f"Predicting, then measuring {path.name}...")
        checks.append(check_prediction(path, bandwidth=hardware.memory_bandwidth, records=records))
    return checks
