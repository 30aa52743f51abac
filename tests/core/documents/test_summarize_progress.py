"""Progress within a part of a summary: a document of one part shows its prompt being read and its words being
written, with the time left, instead of sitting at 0 % until it ends (real model; ``summary_pace`` by numbers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.documents import summarize as summarize_module
from app.core.documents.document import Section, make_document
from app.core.documents.summarize import Summarizer
from app.core.documents.summary_cache import SummaryCache
from app.core.documents.summary_pace import SummaryPace
from app.core.documents.summary_types import SummaryProgress, SummarySettings
from app.core.llm.engine import Engine, ReplyStats
from app.core.llm.load_options import LoadOptions
from tests.fixtures.documents import travelogue_pages

CONTEXT = 512
BATCH = 32  # small batches: the one part's prompt is read in several, each reported
SETTINGS = SummarySettings(brief_max_tokens=40)


@pytest.fixture(scope="module")
def small_engine(model_path: Path) -> Iterator[Engine]:
    engine = Engine()
    engine.load(model_path, LoadOptions(context_size=CONTEXT, batch_size=BATCH))
    yield engine
    engine.unload()


def test_a_one_part_document_moves_while_it_is_read_and_written(
    small_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every report inside the part, not one each half second: a fast machine writes 40 tokens in less.
    monkeypatch.setattr(summarize_module, "PART_REPORT_SECONDS", 0.0)
    document = make_document("short.txt", "text", [Section("lines 1-3", travelogue_pages(1)[0])])
    progress: list[SummaryProgress] = []
    result = Summarizer(small_engine, SummaryCache(), SETTINGS, use_cache=False).summarize(
        document, "brief", on_progress=progress.append
    )
    assert result.method == "one pass" and result.text.strip()
    assert progress[-1].stage == "done" and progress[-1].fraction == 1.0
    within = progress[:-1]  # before the part ended
    assert all(p.total == 1 and p.done == 0 for p in within)
    fractions = [p.fraction for p in within]
    print(
        f"{len(within)} reports inside the part: {[round(f, 2) for f in fractions]}; time left "
        f"{[None if p.eta_seconds is None else round(p.eta_seconds, 1) for p in within]}"
    )
    assert fractions == sorted(fractions), "the bar never goes back"
    assert 0 < fractions[-1] < 1
    read = [p.part_read for p in within if p.part_read is not None]
    assert len(read) >= 2 and 0 < read[0] < 1 and read == sorted(read)
    words = [p.words_written for p in within if p.words_written is not None]
    assert words and words == sorted(words) and words[-1] >= 1
    assert words[-1] <= len(result.text.split())
    reading_fractions = [p.fraction for p in within if p.part_read is not None]
    assert 0 < max(reading_fractions) <= min(p.fraction for p in within if p.words_written)
    # The time left: from the batches timed while reading, then from the words' own speed.
    assert any(p.eta_seconds is not None and p.eta_seconds > 0 for p in within if p.part_read is not None)
    assert any(p.eta_seconds is not None for p in within if p.words_written is not None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_part_under_way_gives_the_time_left_from_its_own_speeds() -> None:
    """By numbers: a first part read at 100 tokens/s, then written at 5 tokens/s; a second part then takes what
    the first one did."""
    clock = Clock()
    pace = SummaryPace(clock)
    part = pace.begin_part(prompt_tokens=400, most_tokens=50)
    assert pace.eta(prompt_tokens=800, calls=2, most_tokens=50) is None  # nothing timed yet
    assert part.share_done(pace) == 0.0
    clock.now = 1.0
    part.read(100, 400)
    assert part.share_read == 0.25 and pace.eta(800, 2, 50) is None  # one report: no batch timed yet
    shares = [part.share_done(pace)]
    clock.now = 2.0
    part.read(200, 400)  # 100 tokens/s: 2 s of reading left, and writing at five times a read token's cost
    assert part.seconds_left(pace) == pytest.approx(2 + 50 * 0.05)
    assert pace.eta(800, 2, 50) == pytest.approx(4.5 + 400 * 0.01 + 50 * 0.05)
    shares.append(part.share_done(pace))
    clock.now = 4.0
    part.read(400, 400)
    stats = ReplyStats(prompt_tokens=400, evaluated_tokens=400, time_to_first_token=4.0)
    for token in range(1, 11):
        clock.now = 4.0 + 0.2 * token
        stats.generated_tokens = token
        part.wrote(" word", stats)
        shares.append(part.share_done(pace))
    assert part.share_read is None and part.words == 10
    assert part.seconds_left(pace) == pytest.approx((50 - 10) * 0.2)
    assert shares == sorted(shares) and 0 < shares[-1] < 1
    stats.total_seconds = 10.0
    stats.generated_tokens = 30
    pace.end_part()
    pace.record(stats)
    # The next part: read at 0.01 s a token, 30 tokens written (what the first wrote) at 0.2 s each.
    assert pace.eta(prompt_tokens=400, calls=1, most_tokens=50) == pytest.approx(400 * 0.01 + 30 * 0.2)
