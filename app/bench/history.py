"""``llamadesk history bench``: how fast the history stays when it is large: list and search timings on a
generated history.

The history is generated (deterministically) into a temporary folder in the cache directory and deleted
afterwards, so the real history is never touched. Word frequencies follow Zipf's law, as in real text, so the
"common" search word matches many messages and the "rare" one a few, like real searches.
"""

from __future__ import annotations

import functools
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from app.core.history.export import EXPORT_FORMAT, EXPORT_VERSION
from app.core.history.search import MATCH_WINDOW
from app.core.history.store import HistoryStore
from app.core.paths import app_paths
from app.core.units import human_bytes

LIST_TARGET_SECONDS = 0.100
SEARCH_TARGET_SECONDS = 0.050
FIRST_PAGE = 200
BATCH = 500  # conversations per transaction while building

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Timing:
    label: str
    wall: float  # median seconds by the clock: what a user waits
    cpu: float  # median seconds of this process's CPU: what it costs, whatever else the machine is doing
    target: float | None = None
    detail: str = ""

    @property
    def meets_target(self) -> bool:
        return self.target is None or self.wall < self.target


@dataclass(frozen=True)
class HistoryBenchResult:
    conversations: int
    messages: int
    build_seconds: float
    database_bytes: int
    open_seconds: float
    load_average: float | None  # of the machine over the last minute, when the system tells it
    timings: list[Timing]

    def report(self) -> str:
        load = f", load average {self.load_average:.1f} on {os.cpu_count()} CPUs" if self.load_average else ""
        lines = [
            f"History benchmark: {self.conversations:,} conversations, {self.messages:,} messages{load}",
            f"  built in {self.build_seconds:.1f} s ({self.messages / self.build_seconds:,.0f} messages/s), "
            f"database {human_bytes(self.database_bytes)}",
            f"  open (quick_check, migrations, interrupted replies): {self.open_seconds * 1000:.1f} ms",
            f"  {'median of the timed runs':<44} {'wall':>9} {'cpu':>9}",
        ]
        for timing in self.timings:
            target = ""
            if timing.target is not None:
                verdict = "ok" if timing.meets_target else "OVER TARGET"
                target = f"  target < {timing.target * 1000:.0f} ms: {verdict}"
            detail = f"  [{timing.detail}]" if timing.detail else ""
            lines.append(
                f"  {timing.label:<44} {timing.wall * 1000:6.2f} ms {timing.cpu * 1000:6.2f} ms{target}{detail}"
            )
        return "\n".join(lines)


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))))
    return sorted(words, key=lambda w: (len(w), w))  # short words first: they get the Zipf head, as in speech


def generate_export(
    conversations: int, messages: int, *, seed: int = 20261122, now: datetime | None = None
) -> tuple[list[dict[str, Any]], tuple[str, str, str]]:
    """A history as export data, plus two common words and a rare one that occur in it."""
    rng = random.Random(seed)
    vocabulary = _vocabulary(rng, 6000)
    cumulative: list[float] = []
    total = 0.0
    for rank in range(1, len(vocabulary) + 1):
        total += 1 / rank
        cumulative.append(total)
    search_words = vocabulary[40], vocabulary[60], vocabulary[4000]
    now = now or datetime.now(timezone.utc)
    per_conversation, extra = divmod(messages, conversations)
    items: list[dict[str, Any]] = []
    for index in range(conversations):
        count = per_conversation + (1 if index < extra else 0)
        started = now - timedelta(days=rng.uniform(0, 400))
        moment = started
        turns = []
        for turn in range(count):
            role = "user" if turn % 2 == 0 else "assistant"
            length = rng.randint(6, 25) if role == "user" else rng.randint(25, 80)
            words = rng.choices(vocabulary, cum_weights=cumulative, k=length)
            moment += timedelta(seconds=rng.uniform(2, 60))
            turns.append(
                {
                    "role": role,
                    "content": " ".join(words).capitalize() + ".",
                    "created": moment.isoformat(timespec="milliseconds"),
                    "state": "complete",
                }
            )
        title = turns[0]["content"][:60] if turns else ""
        items.append(
            {
                "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "title": title,
                "mode": "chat",
                "model": "/models/bench.gguf",
                "settings": {"temperature": 0.7},
                "created": started.isoformat(timespec="milliseconds"),
                "updated": moment.isoformat(timespec="milliseconds"),
                "messages": turns,
            }
        )
    return items, search_words


def _matches(count: int) -> str:
    ranked = f", the newest {MATCH_WINDOW:,} ranked" if count > MATCH_WINDOW else ""
    return f"{count:,} matching messages{ranked}"


def _measure(
    label: str, action: Callable[[], object], runs: int, target: float | None = None, detail: str = ""
) -> Timing:
    action()  # warm the page cache and SQLite's statement cache, as a running app would have them
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(label, statistics.median(walls), statistics.median(cpus), target, detail)


def run_history_benchmark(
    *,
    conversations: int = 10_000,
    messages: int = 200_000,
    runs: int = 7,
    progress: Progress | None = None,
    out: TextIO | None = None,
) -> HistoryBenchResult:
    say = progress or (lambda _line: None)
    cache = app_paths().cache_dir
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(prefix="history-bench-", dir=cache) as folder:
        path = Path(folder) / "history.sqlite3"
        say(f"Generating {conversations:,} conversations with {messages:,} messages...")
        items, (common_word, second_word, rare_word) = generate_export(conversations, messages)
        say("Writing them to a temporary database...")
        started = time.perf_counter()
        with HistoryStore(path) as store:
            for first in range(0, len(items), BATCH):
                store.import_data(
                    {
                        "format": EXPORT_FORMAT,
                        "version": EXPORT_VERSION,
                        "conversations": items[first : first + BATCH],
                    }
                )
        build_seconds = time.perf_counter() - started
        del items
        size = sum(p.stat().st_size for p in Path(folder).iterdir())

        say("Timing...")
        started = time.perf_counter()
        store = HistoryStore(path)
        open_seconds = time.perf_counter() - started
        with store:
            some_id = store.list_conversations(limit=1)[0].id
            pair = f"{common_word} {second_word}"

            def first_page() -> None:
                store.list_conversations(limit=FIRST_PAGE)
                store.count_conversations()

            timings = [
                _measure(f"list: first {FIRST_PAGE} + count", first_page, runs, LIST_TARGET_SECONDS),
                _measure(
                    "list: all conversations",
                    store.list_conversations,
                    runs,
                    LIST_TARGET_SECONDS,
                    f"{conversations:,} rows",
                ),
            ]
            for label, words in (
                ("common word", common_word),
                ("two common words", pair),
                ("rare word", rare_word),
            ):
                timings.append(
                    _measure(
                        f"search {label} {words!r} (top 50)",
                        functools.partial(store.search, words, limit=50),
                        runs,
                        SEARCH_TARGET_SECONDS,
                        _matches(store.count_matches(words)),
                    )
                )
            for label, words in (("common word", common_word), ("rare word", rare_word)):
                timings.append(
                    _measure(
                        f"list filtered by the {label} (first {FIRST_PAGE})",
                        functools.partial(store.list_conversations, words, limit=FIRST_PAGE),
                        runs,
                        LIST_TARGET_SECONDS,
                        f"{store.count_conversations(words):,} conversations",
                    )
                )
            timings.append(
                _measure("open one conversation (its messages)", lambda: store.messages(some_id), runs)
            )
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result = HistoryBenchResult(
        conversations, messages, build_seconds, size, open_seconds, load_average, timings
    )
    print(result.report(), file=out or sys.stdout)
    return result
