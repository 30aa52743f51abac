"""What a summary is asked for and what it reports: styles, settings, progress, and the result.

Plain data shared by the summarizer and everyone who shows its work (the document card, the terminal's progress
line, the benchmark), so none of them needs the summarizer itself to name a style or read a result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from app.core.errors import UserError

SummaryStyle = Literal["brief", "detailed", "points"]
STYLES: tuple[SummaryStyle, ...] = ("brief", "detailed", "points")
STYLE_LABELS: dict[SummaryStyle, str] = {"brief": "Brief", "detailed": "Detailed", "points": "Key points"}

SummaryStage = Literal["sections", "combining", "final", "done"]


def summary_style(name: str) -> SummaryStyle:
    """The style called ``name`` (as a menu or a command line gives it), or a UserError naming the choices."""
    for style in STYLES:
        if style == name:
            return style
    raise UserError(f"There is no summary style called {name!r}; choose brief, detailed or points.")


@dataclass(frozen=True)
class SummarySettings:
    """What shapes a summary; any change here makes new cache entries rather than reusing old ones."""

    # Two or three sentences. Near a full context a small model writes only ~25 tokens/s, so each token of a
    # section summary costs what reading ~5 tokens of the document does: longer ones would make the summary
    # cost far more than the reading.
    section_max_tokens: int = 72
    # A combined summary stands for several sections: three or four sentences.
    combine_max_tokens: int = 96
    point_max_tokens: int = 48
    brief_max_tokens: int = 200
    detailed_max_tokens: int = 480
    max_points: int = 8
    temperature: float = 0.0
    repeat_penalty: float = 1.15

    def final_max_tokens(self, style: SummaryStyle, context_size: int) -> int:
        wanted = {"brief": self.brief_max_tokens, "detailed": self.detailed_max_tokens}.get(
            style, self.point_max_tokens
        )
        return max(32, min(wanted, context_size // 3))


@dataclass
class PartSummary:
    """A summary of consecutive chunks (one chunk at level 0, combined ones above)."""

    label: str
    text: str
    chunk_ids: list[int]
    first_section: int
    last_section: int
    level: int = 0
    cached: bool = False


@dataclass(frozen=True)
class SummaryProgress:
    """Where a summary is: ``done`` of ``total`` parts, and within the part under way (a document of one part
    is one part for all its minutes) the share of its prompt read, then the words written of it."""

    stage: SummaryStage
    done: int
    total: int
    eta_seconds: float | None  # the whole summary's time left; None until a speed has been measured
    cache_hits: int
    part_done: float = 0.0  # the share of the part under way done (0..1)
    part_read: float | None = None  # the share of its prompt read, while that is read
    words_written: int | None = None  # the words written of it, once it is being written

    @property
    def fraction(self) -> float:
        return min(1.0, (self.done + self.part_done) / self.total) if self.total else 0.0


@dataclass(frozen=True)
class CallRecord:
    """One request to the model, for the statistics and the tests' budget checks."""

    stage: str
    prompt_tokens: int
    evaluated_tokens: int
    generated_tokens: int
    seconds: float
    context_size: int
    finish_reason: str


@dataclass
class SummaryResult:
    document_name: str
    style: SummaryStyle
    text: str
    method: Literal["one pass", "hierarchical"]
    chunk_count: int
    document_tokens: int
    context_size: int
    visited_chunk_ids: list[int] = field(default_factory=list)
    section_summaries: list[PartSummary] = field(default_factory=list)
    levels: int = 0  # combining levels above the section summaries
    cancelled: bool = False
    cache_hits: int = 0
    # Parts (sections, combined sections, key points) the model wrote nothing for, even when asked twice: left
    # out of what was built on them.
    empty_parts: int = 0
    calls: list[CallRecord] = field(default_factory=list)
    final_prompt_tokens: int = 0
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.cancelled and sorted(self.visited_chunk_ids) == list(range(self.chunk_count))

    @property
    def generated_tokens(self) -> int:
        return sum(c.generated_tokens for c in self.calls)


ProgressCallback = Callable[[SummaryProgress], None]
TextCallback = Callable[[str], None]
