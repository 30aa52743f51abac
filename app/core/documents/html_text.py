"""The text of an HTML page as a reader sees it, in time linear in the page's size.

libxml2 (through lxml) parses: the standard library's HTMLParser is about quadratic on a page of unclosed tags
(50 KB of them took 30 s). libxml2 stops nesting at 256 levels and drops what lies deeper; a page that deep is
broken or hostile, so its text is taken instead by stripping the tags, which keeps every word.
"""

from __future__ import annotations

import html
import logging
import re

from lxml import etree
from lxml import html as lxml_html

log = logging.getLogger(__name__)

Block = tuple[str | None, str]  # (heading text or None, block text)

SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "head", "iframe", "object"})
BLOCKS = frozenset({
    "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer", "nav",
    "blockquote", "pre", "hr", "dt", "dd", "figcaption", "h1", "h2", "h3", "h4", "h5", "h6", "title", "main",
})  # fmt: skip
SECTION_HEADINGS = frozenset({"h1", "h2", "h3"})

_TAG = re.compile(r"<[^<>]*>")  # no nested quantifier: one pass, no backtracking across tags
_BLOCK_TAG = re.compile(r"</?(?:" + "|".join(sorted(BLOCKS)) + r")\b[^<>]*>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\r\n]+")


def html_blocks(text: str) -> list[Block]:
    """The page's text as blocks, each heading (h1-h3) its own block with its text as the heading."""
    parser = lxml_html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True, no_network=True)
    root = etree.fromstring(text.encode("utf-8", errors="replace"), parser)
    if any(error.type_name == "ERR_RESOURCE_LIMIT" for error in parser.error_log):
        log.info("html nested beyond libxml2's depth limit; taking its text by stripping tags")
        return _stripped_blocks(text)
    if root is None:
        return []
    collector = _BlockCollector()
    for event, element in etree.iterwalk(root, events=("start", "end")):
        tag = element.tag if isinstance(element.tag, str) else ""
        if event == "start":
            collector.start(tag.lower())
            collector.data(element.text)
        else:
            collector.end(tag.lower())
            collector.data(element.tail)
    collector.flush()
    return collector.blocks


class _BlockCollector:
    """No markup, no scripts or styles, a block break where the layout breaks; fed start, end and text."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._parts: list[str] = []
        self._skip_depth = 0
        self._heading: list[str] | None = None
        self._in_pre = 0

    def flush(self) -> None:
        text = "".join(self._parts)
        if not self._in_pre:
            text = _SPACES.sub(" ", text)
        if text.strip():
            self.blocks.append((None, text.strip() if not self._in_pre else text))
        self._parts = []

    def start(self, tag: str) -> None:
        if tag in SKIPPED:
            self._skip_depth += 1
            return
        if tag in BLOCKS:
            self.flush()
        if tag == "pre":
            self._in_pre += 1
        if tag in SECTION_HEADINGS and not self._skip_depth:
            self._heading = []

    def end(self, tag: str) -> None:
        if tag in SKIPPED:
            self._skip_depth = max(0, self._skip_depth - 1)
            return
        if tag == "pre":
            self.flush()
            self._in_pre = max(0, self._in_pre - 1)
        if tag in SECTION_HEADINGS and self._heading is not None:
            heading = " ".join("".join(self._heading).split())
            self._heading = None
            self._parts = []
            if heading:
                self.blocks.append((heading, heading))
            return
        if tag in BLOCKS:
            self.flush()

    def data(self, text: str | None) -> None:
        if not text or self._skip_depth:
            return
        if self._heading is not None:
            self._heading.append(text)
        self._parts.append(text)


def _stripped_blocks(text: str) -> list[Block]:
    """Every word outside scripts and styles, a block per layout break; for pages too deep to parse."""
    text = _without_elements(text, ("script", "style"))
    text = _BLOCK_TAG.sub("\n", text)
    blocks: list[Block] = []
    for line in _TAG.sub(" ", text).split("\n"):
        words = _SPACES.sub(" ", html.unescape(line)).strip()
        if words:
            blocks.append((None, words))
    return blocks


def _without_elements(text: str, tags: tuple[str, ...]) -> str:
    """``text`` without the named elements and what they hold; one forward scan (an unclosed one drops the
    rest, as a browser would), where a regular expression would rescan the page for each unclosed tag."""
    lowered = text.lower()
    kept: list[str] = []
    position = 0
    next_start = {tag: lowered.find("<" + tag) for tag in tags}  # found again only once passed: linear
    while True:
        for tag, found in next_start.items():
            if 0 <= found < position:
                next_start[tag] = lowered.find("<" + tag, position)
        starts = [(found, tag) for tag, found in next_start.items() if found >= 0]
        if not starts:
            kept.append(text[position:])
            return "".join(kept)
        start, tag = min(starts)
        kept.append(text[position:start])
        end = lowered.find("</" + tag, start)
        if end < 0:
            return "".join(kept)
        close = lowered.find(">", end)
        position = len(text) if close < 0 else close + 1
