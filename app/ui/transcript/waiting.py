"""What a reply's bubble says before its first word: that the message is being read, how far, for how long.

A long prompt on a slow machine takes many seconds to evaluate; an empty bubble then looks like a hang.
"""

from __future__ import annotations


def waiting_note(seconds: float, progress: tuple[int, int] | None) -> str:
    """The sentence for ``seconds`` since the request, with ``progress`` (prompt tokens done, total) if the
    engine has reported some. The percentage shows only while some of the prompt is still to read."""
    note = "Reading your message…"
    if progress is not None:
        done, total = progress
        if total > 0 and done < total:
            note += f" {100 * done // total}%"
    if seconds >= 1:
        note += f" · {int(seconds)} s"
    return note
