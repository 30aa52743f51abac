"""Numbers as people read them: sizes, durations, rates."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """Decimal units, as disks and Hugging Face count them: 98.4 MB, 4.9 GB."""
    value = float(n)
    if value < 1000:
        return f"{value:.0f} bytes"
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """Short durations for ETAs: 45 s, 3 min 20 s, 1 h 05 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """A count with its noun in the right number, thousands grouped: "1 token", "2,048 tokens"."""
    return f"{count:,} {noun if count == 1 else (plural or noun + 's')}"
