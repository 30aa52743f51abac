"""Stop sequences end the reply wherever the model's pieces split them, and none of a stop is ever sent."""

from __future__ import annotations

import pytest

from app.core.llm.stops import StopScanner


def run(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    scanner = StopScanner(stops)
    sent = "".join(scanner.feed(piece) for piece in pieces) + scanner.flush()
    return sent, scanner.stopped


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["Hello Paris is"], "Hello "),
        (["Hello Pa", "ris is"], "Hello "),  # split across pieces
        (["Hello P", "a", "r", "i", "s"], "Hello "),  # one character at a time
        (["Pa", "ra", "Paris"], "Para"),  # a false start, then the stop
    ],
)
def test_a_stop_ends_the_reply_and_is_not_sent(pieces: list[str], expected: str) -> None:
    assert run(["Paris"], pieces) == (expected, True)


def test_a_false_start_held_back_is_sent_when_the_reply_ends() -> None:
    assert run(["Paris"], ["It is Pa"]) == ("It is Pa", False)


def test_the_earliest_of_several_stops_wins() -> None:
    assert run(["\n\n", "END"], ["one END two\n\nthree"]) == ("one ", True)


def test_nothing_is_sent_after_the_stop() -> None:
    scanner = StopScanner(["x"])
    assert scanner.feed("abxcd") == "ab"
    assert scanner.feed("more") == ""
    assert scanner.flush() == ""


def test_no_stops_sends_everything_at_once() -> None:
    scanner = StopScanner([])
    assert scanner.feed("abc") == "abc"
    assert scanner.flush() == ""
