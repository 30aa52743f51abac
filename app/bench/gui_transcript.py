"""The transcript's part of ``llamadesk bench --gui``: a long reply streamed through the real chat view, a theme
change on it, and opening a long conversation.

A 50,000-character reply with code blocks, lists and a table is streamed into the window's own ``ChatView`` at
100 tokens a second (tokens of a few characters, as a model writes them). Its cost per repaint is measured near
2,000 and near 50,000 characters: streaming stays smooth only if the cost does not grow with the reply (goal:
the ratio <= 1.5). The stretch between the two is fast-forwarded (appended in large pieces, not measured), so the
case takes seconds rather than the two minutes a real reply of that length would. Then the colours are switched to
the other theme, and a stored conversation of 200 messages is opened: the time until the transcript first paints
it (goal < 100 ms).
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.bench.qt_timing import GapTimer, run_until

if TYPE_CHECKING:
    from app.core.history.store import HistoryStore
    from app.ui.main_window import MainWindow

LONG_REPLY_CHARS = 50_000
TOKENS_PER_SECOND = 100
NEAR_START_CHARS = 2_000
OPENED_MESSAGES = 200
# Tokens as a model writes them: a word or a piece of one with its leading space, a number, one sign, or a run
# of white space. Joined, they give back the text exactly.
_TOKEN = re.compile(r" ?[^\W\d_]{1,5}| ?\d{1,3}|\s+|.", re.DOTALL)


@dataclass
class TranscriptBenchResult:
    reply_chars: int
    frame_ms_near_start: float  # median render cost per repaint near 2,000 characters
    frame_ms_near_end: float  # ... and near the end of the 50,000-character reply
    frame_ratio: float  # end / start (goal <= 1.5)
    frames_measured: int
    streaming_worst_gap_ms: float  # the longest the GUI thread waited while the reply streamed (goal < 50 ms)
    final_render_ms: float  # the reply rendered once more as it ends
    theme_change_ms: float  # switching the 50,000-character reply to the other theme's colours
    open_messages: int
    open_first_paint_ms: float  # from opening a 200-message conversation to the transcript's first paint

    def report(self) -> str:
        return "\n".join(
            [
                f"Long reply ({self.reply_chars:,} characters with code) streamed at {TOKENS_PER_SECOND} tokens/s:",
                f"  render cost per frame {self.frame_ms_near_start:.2f} ms near {NEAR_START_CHARS:,} characters, "
                f"{self.frame_ms_near_end:.2f} ms near {self.reply_chars:,}: ratio {self.frame_ratio:.2f} "
                f"(goal <= 1.5; {self.frames_measured} frames)",
                f"  worst GUI-thread gap while streaming {self.streaming_worst_gap_ms:.1f} ms (goal < 50 ms); "
                f"final render {self.final_render_ms:.1f} ms",
                f"  theme change on it {self.theme_change_ms:.1f} ms",
                f"Opening a conversation of {self.open_messages} messages: first paint after "
                f"{self.open_first_paint_ms:.1f} ms (goal < 100 ms)",
            ]
        )


def long_reply_text(chars: int = LONG_REPLY_CHARS) -> str:
    """A reply like a long answer about code: headings, paragraphs, lists, a table and fenced code blocks, in
    sections that vary so no two repaints see the same text."""
    sections: list[str] = []
    index = 0
    while sum(len(section) for section in sections) < chars:
        index += 1
        sections.append(
            f"## Step {index}: reading the input\n\n"
            f"The parser for part {index} reads the file line by line, keeps a **running total** and reports "
            f"anything it cannot understand with its line number, so a person can fix the file and try again. "
            f"It never stops at the first problem: every bad line is listed.\n\n"
            f"- open the file as UTF-8 and read it in blocks of {index * 64} lines\n"
            f"- skip blank lines and comments\n"
            f"- keep `total_{index}` as a plain integer\n\n"
            f"```python\n"
            f"def read_totals_{index}(path: str) -> dict[str, int]:\n"
            f"    totals: dict[str, int] = {{}}\n"
            f'    with open(path, encoding="utf-8") as handle:\n'
            f"        for number, line in enumerate(handle, start=1):\n"
            f'            name, _, value = line.partition(",")\n'
            f"            if not value.strip().isdigit():\n"
            f'                raise ValueError(f"line {{number}}: {{line!r}}")\n'
            f"            totals[name] = totals.get(name, 0) + int(value) * {index}\n"
            f"    return totals\n"
            f"```\n\n"
            f"| Case | Input | Result |\n|---|---|---|\n| {index} | `a,{index}` | {index * index} |\n\n"
            f"1. Run it on a small file first.\n2. Compare with the totals you expect.\n\n"
            f"```javascript\nconst total{index} = rows.reduce((sum, row) => sum + row.value * {index}, 0);\n"
            f"console.log(`total: ${{total{index}}}`);\n```\n\n"
        )
    return "".join(sections)[:chars]


def tokens_of(text: str) -> list[str]:
    return _TOKEN.findall(text)


def measure_transcript(
    window: MainWindow,
    store: HistoryStore,
    *,
    chars: int = LONG_REPLY_CHARS,
    open_messages: int = OPENED_MESSAGES,
) -> TranscriptBenchResult:
    """Run the long-reply, theme and opening cases in ``window`` (shown, idle)."""
    from app.ui.transcript.markdown_render import DARK, LIGHT

    view = window.chat_view
    window.new_conversation()
    run_until(lambda: False, 0.1)
    tokens = tokens_of(long_reply_text(chars))
    total = sum(len(token) for token in tokens)
    near_end_from = max(total - NEAR_START_CHARS, NEAR_START_CHARS * 2)
    reply = view.begin_reply()
    fed = 0  # tokens given to the view so far
    timer = GapTimer()

    def stream(until_chars: int) -> list[float]:
        """Feed tokens in real time at TOKENS_PER_SECOND until ``until_chars`` characters were given; the render
        cost of each repaint meanwhile."""
        nonlocal fed
        costs: list[float] = []
        started, given, first = time.perf_counter(), len(reply.text) + len(view.pending_text), fed
        while fed < len(tokens) and given < until_chars:
            due = first + int((time.perf_counter() - started) * TOKENS_PER_SECOND) + 1
            while fed < min(due, len(tokens)):
                view.append_to_reply(tokens[fed])
                given += len(tokens[fed])
                fed += 1
            renders = view.render_count
            run_until(lambda: False, 0.005)
            if view.render_count != renders:
                costs.append(view.last_render_seconds)
        return costs

    timer.start()
    near_start = stream(NEAR_START_CHARS + NEAR_START_CHARS // 4)[-30:]
    timer.stop()
    streaming_gaps = timer.gaps[1:]
    # Fast-forward (not measured): pieces of about a screenful, each rendered once.
    while fed < len(tokens) and len(reply.text) < near_end_from:
        piece_end, size = fed, 0
        while piece_end < len(tokens) and size < 1500:
            size += len(tokens[piece_end])
            piece_end += 1
        view.append_to_reply("".join(tokens[fed:piece_end]))
        fed = piece_end
        run_until(lambda: not view.pending_text, 5)
    timer.start()
    near_end = stream(total)
    run_until(lambda: not view.pending_text, 1)
    final_started = time.perf_counter()
    view.finish_reply(None, "complete")
    final_render = time.perf_counter() - final_started
    run_until(lambda: False, 0.1)
    timer.stop()
    streaming_gaps += timer.gaps[1:]
    if reply.text != "".join(tokens):
        raise RuntimeError("the transcript lost part of the streamed reply")

    theme_started = time.perf_counter()
    view.set_palette(DARK if window.palette_for_messages is LIGHT else LIGHT)
    theme_change = time.perf_counter() - theme_started
    view.set_palette(window.palette_for_messages)

    first_paint = _open_conversation(window, store, open_messages)
    start_cost = statistics.median(near_start) if near_start else 0.0
    end_cost = statistics.median(near_end) if near_end else 0.0
    return TranscriptBenchResult(
        reply_chars=len(reply.text),
        frame_ms_near_start=start_cost * 1000,
        frame_ms_near_end=end_cost * 1000,
        frame_ratio=end_cost / start_cost if start_cost else 0.0,
        frames_measured=len(near_start) + len(near_end),
        streaming_worst_gap_ms=max(streaming_gaps, default=0.0) * 1000,
        final_render_ms=final_render * 1000,
        theme_change_ms=theme_change * 1000,
        open_messages=open_messages,
        open_first_paint_ms=first_paint * 1000,
    )


def run_transcript_benchmark(
    chars: int = LONG_REPLY_CHARS, open_messages: int = OPENED_MESSAGES
) -> TranscriptBenchResult:
    """The transcript's cases alone, in a window with no model loaded (they need none), in a throwaway home."""
    import os

    from app.core.paths import scratch_home

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.core.history.store import HistoryStore
    from app.core.settings import Settings
    from app.ui.main_window import MainWindow

    existing = QApplication.instance()
    _app = existing if isinstance(existing, QApplication) else QApplication([])
    with scratch_home("llamadesk-bench-"):
        store = HistoryStore()
        window = MainWindow(settings=Settings(), store=store, open_default_model=False)
        window.show()
        run_until(lambda: False, 0.3)
        try:
            return measure_transcript(window, store, chars=chars, open_messages=open_messages)
        finally:
            window.close()


def _open_conversation(window: MainWindow, store: HistoryStore, count: int) -> float:
    """Seconds from asking for a stored conversation of ``count`` messages to the transcript's first paint of it."""
    from PySide6.QtCore import QEvent, QObject

    conversation = store.create_conversation(mode="chat", model="bench")
    answer = long_reply_text(1_200)
    for index in range(count):
        if index % 2 == 0:
            store.add_message(
                conversation.id, "user", f"Question {index}: how do I total the rows of a file?"
            )
        else:
            store.add_message(conversation.id, "assistant", answer)
    view = window.chat_view
    painted: list[float] = []

    class PaintWatch(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint and view.messages and not painted:
                painted.append(time.perf_counter())
            return False

    watch = PaintWatch()
    view.viewport().installEventFilter(watch)
    started = time.perf_counter()
    window.open_conversation(conversation.id)
    run_until(lambda: bool(painted), 10)
    view.viewport().removeEventFilter(watch)
    if not painted:
        raise RuntimeError("the transcript never painted the opened conversation")
    return painted[0] - started
