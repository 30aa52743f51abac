"""A streaming reply rendered piece by piece gives exactly what a full render gives, and keeps its finished pieces."""

from __future__ import annotations

import random

import pytest

from app.bench.gui_transcript import long_reply_text
from app.ui.transcript.markdown_render import DARK, LIGHT, MarkdownRenderer
from app.ui.transcript.streaming_render import StreamingMarkdown

# Texts with what can change a block after it seems finished: fences (open, nested, unlabelled), lists that go
# on after a blank line (loose), indented continuations, tables, quotes, setext headings, bare code, references.
TRICKY = [
    "Intro.\n\n```python\ndef f(x):\n\n    return x\n```\n\nAfter.\n\n- a\n- b\n\n- c (the list goes on, loose)\n\n"
    "Next paragraph\n===\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nText.\n\n> quote\nlazy\n\nEnd.",
    "1. one\n\n2. two\n\n   still two\n\nafter\n\n```\nplain = code(1)\nprint(plain)\n```\n\ndone",
    "Here:\n\ndef reverse(text):\n    return text[::-1]\n\nprint(reverse('x'))\n\nIt slices.\n\n"
    "# Heading\n\nimport os\n\nx = 1\n\nmore prose",
    "- item\n  ```\n  code\n```\n\nfoo\n\nbar\n\n~~~~\n```\n~~~~\n\nbaz",
    "See [the docs][d] and [more].\n\nA paragraph.\n\n[d]: https://docs.example\n\nEnd.",
    "    indented code\n\n    more of it\n\nprose\n\n---\n\n***\n\n* star\n\n+ plus\n\ntext",
    long_reply_text(6_000),
]


def _stream(text: str, seed: int, renderer: MarkdownRenderer) -> tuple[StreamingMarkdown, int]:
    chunks = random.Random(seed)
    streaming = StreamingMarkdown(renderer)
    full = MarkdownRenderer(renderer.palette)
    shown, checked = 0, 0
    while shown < len(text):
        shown = min(len(text), shown + chunks.choice([1, 2, 3, 5, 8, 13, 40, 120]))
        streaming.update(text[:shown], final=False)
        expected = full.render(text[:shown], final=False)
        assert streaming.html(renderer.palette) == expected.html, f"after {shown} characters"
        assert streaming.code_blocks == expected.code_blocks
        checked += 1
    return streaming, checked


@pytest.mark.parametrize("index", range(len(TRICKY)))
def test_streamed_in_random_chunks_every_step_equals_a_full_render(index: int) -> None:
    text = TRICKY[index]
    for seed in range(3):
        streaming, _ = _stream(text, seed, MarkdownRenderer(LIGHT))
        streaming.update(text, final=True)
        expected = MarkdownRenderer(LIGHT).render(text, final=True)
        assert streaming.html(LIGHT) == expected.html
        assert streaming.code_blocks == expected.code_blocks
        assert streaming.languages == expected.languages


def test_finished_blocks_are_kept_and_only_the_rest_is_rendered() -> None:
    text = long_reply_text(20_000)
    streaming, _ = _stream(text[:3000], 1, MarkdownRenderer(LIGHT))
    streaming.update(text, final=False)
    assert len(streaming.pieces) >= 2
    kept = list(streaming.pieces)
    streaming.update(text + " more", final=False)
    assert streaming.pieces[: len(kept)] == kept and streaming.reused == len(kept)
    assert len(streaming.tail.markup) < 4000  # only the unfinished end is rendered again


def test_a_theme_change_recolours_the_kept_rendering_without_parsing_again() -> None:
    text = long_reply_text(8_000)
    renderer = MarkdownRenderer(LIGHT)
    streaming = StreamingMarkdown(renderer)
    streaming.update(text, final=True)
    lexed = dict(renderer._highlighted)
    assert streaming.html(DARK) == MarkdownRenderer(DARK).render(text).html
    assert renderer._highlighted == lexed
