"""Tidying what the model writes: key points on one line without the preamble, summaries ending on a sentence."""

from __future__ import annotations

from app.core.documents.summary_prompts import OneLinePoint, whole_sentences


def test_a_key_point_loses_its_preamble_and_its_line_breaks() -> None:
    sent: list[str] = []
    line = OneLinePoint(sent.append)
    for piece in ["The most important point of the text ", "is that the ", "harbour\nfreezes in ", "winter."]:
        line(piece)
    line.finish()
    assert "".join(sent) == line.text == "The harbour freezes in winter."


def test_a_summary_cut_at_its_length_limit_ends_on_its_last_sentence() -> None:
    assert (
        whole_sentences("The town is old. Its harbour freezes. The mark")
        == "The town is old. Its harbour freezes."
    )
    assert whole_sentences("One short. And then a much longer unfinished tail that goes on") == (
        "One short. And then a much longer unfinished tail that goes on"
    )
