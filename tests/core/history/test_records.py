"""The history's small rules: day groups of the conversation list, and titles."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from app.core.history.records import auto_title, group_label


def test_group_labels_by_calendar_day() -> None:
    zone = timezone(timedelta(hours=1))
    now = datetime(2026, 3, 10, 9, 0, tzinfo=zone)
    cases = {
        datetime(2026, 3, 10, 0, 0, tzinfo=zone): "Today",
        datetime(2026, 3, 10, 23, 0, tzinfo=zone): "Today",  # later today: a clock set back
        datetime(2026, 3, 9, 23, 59, tzinfo=zone): "Yesterday",
        datetime(2026, 3, 9, 0, 0, tzinfo=zone): "Yesterday",
        datetime(2026, 3, 8, 23, 59, tzinfo=zone): "Previous 7 days",
        datetime(2026, 3, 3, 0, 0, tzinfo=zone): "Previous 7 days",
        datetime(2026, 3, 2, 23, 59, tzinfo=zone): "Older",
        datetime(2025, 12, 31, 12, 0, tzinfo=zone): "Older",
        # 23:30 UTC on the 9th is 00:30 on the 10th in this zone: the user's calendar decides.
        datetime(2026, 3, 9, 23, 30, tzinfo=timezone.utc): "Today",
        datetime(2026, 3, 9, 22, 30, tzinfo=timezone.utc): "Yesterday",
    }
    assert {moment: group_label(moment, now) for moment in cases} == cases


def test_auto_title_is_one_short_line() -> None:
    assert auto_title("  What is   the capital\nof France?  ") == "What is the capital of France?"
    long = (
        "Please explain in detail how the quick brown fox jumps over the lazy dog and why it matters so much"
    )
    title = auto_title(long)
    assert len(title) <= 60
    assert title.endswith("…")
    assert long.startswith(title[:-1])
    assert title[-2] != " "
