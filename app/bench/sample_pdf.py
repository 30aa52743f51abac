"""A plain text PDF written from scratch, for benchmarks that need a long document without a PDF library.

Pages of Helvetica text, uncompressed: what pypdf reads back is the text written, page by page.
"""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

LINES_PER_PAGE = 48
LINE_WIDTH = 95
_WORDS = [
    "the",
    "harbour",
    "lighthouse",
    "keeper",
    "storm",
    "ship",
    "lantern",
    "tide",
    "rocks",
    "coast",
    "village",
    "winter",
    "evening",
    "north",
    "wind",
    "light",
    "signal",
    "crew",
    "captain",
    "night",
    "sea",
    "chart",
    "morning",
    "fog",
    "bell",
    "island",
    "supply",
    "boat",
    "letter",
    "year",
    "river",
    "bridge",
    "market",
]


def sample_pages(count: int, seed: int = 3) -> list[str]:
    """``count`` pages of varied sentences, each page about 4,000 characters."""
    rng = random.Random(seed)
    pages = []
    for number in range(1, count + 1):
        sentences: list[str] = []
        while sum(len(s) for s in sentences) < 4000:
            words = rng.choices(_WORDS, k=rng.randint(8, 18))
            sentences.append(" ".join(words).capitalize() + ".")
        pages.append(f"Page {number}. " + " ".join(sentences))
    return pages


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_text_pdf(path: Path, pages: list[str]) -> Path:
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in once the page tree's number is known
    tree = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    page_ids = []
    for text in pages:
        lines = textwrap.wrap(text, LINE_WIDTH)[:LINES_PER_PAGE]
        ops = ["BT", "/F1 10 Tf", "14 TL", "50 800 Td"] + [f"({_escape(line)}) '" for line in lines] + ["ET"]
        stream = "\n".join(ops).encode("latin-1", "replace")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        page_ids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
                b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (tree, content, font)
            )
        )
    kids = b" ".join(b"%d 0 R" % page for page in page_ids)
    objects[tree - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % tree

    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        catalog,
        xref,
    )
    path.write_bytes(bytes(out))
    return path
