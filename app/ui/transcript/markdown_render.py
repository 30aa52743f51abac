"""Markdown to the HTML subset Qt's rich text understands, with code blocks highlighted by Pygments.

Qt's QTextDocument renders HTML 4 with inline styles, not CSS classes, so Pygments writes inline styles and
code blocks become one-cell tables (the only way to give a block a background and padding in Qt rich text).
Each code block gets a header naming its language and a ``copy:N`` link the view turns into a clipboard copy.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name, guess_lexer
from pygments.util import ClassNotFound


@dataclass(frozen=True)
class Palette:
    text: str
    code_background: str
    code_header: str
    inline_code_background: str
    link: str
    pygments_style: str


LIGHT = Palette("#1f2328", "#f6f8fa", "#57606a", "#eff1f3", "#0969da", "default")
DARK = Palette("#e6edf3", "#161b22", "#8b949e", "#2d333b", "#4493f8", "monokai")


@dataclass
class Rendered:
    html: str
    code_blocks: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)


class MarkdownRenderer:
    def __init__(self, palette: Palette = LIGHT) -> None:
        self.palette = palette
        # No images: a model's ![](/etc/passwd) must not make the view read local files.
        self._md = (
            MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True})
            .enable("table")
            .disable("image")
        )
        self.final = True
        # markdown-it binds rule functions to its renderer, so they take the renderer as first argument.
        self._md.add_render_rule("fence", lambda _r, tokens, idx, _o, _e: self._render_fence(tokens, idx))
        self._md.add_render_rule(
            "code_block", lambda _r, tokens, idx, _o, _e: self._render_fence(tokens, idx)
        )
        self._md.add_render_rule(
            "code_inline", lambda _r, tokens, idx, _o, _e: self._render_inline_code(tokens, idx)
        )
        self._md.add_render_rule(
            "link_close",
            lambda r, tokens, idx, options, env: self._render_link_close(r, tokens, idx, options, env),
        )
        self._blocks: list[str] = []
        self._languages: list[str] = []
        self._source_lines = 0
        # Highlighted blocks by (lexer, code): a streaming reply re-renders ~30 times a second, and its
        # finished code blocks do not change.
        self._highlighted: dict[tuple[str, str], str] = {}

    def render(self, text: str, *, final: bool = True) -> Rendered:
        """``final=False`` while a reply streams: the block still being written is shown plain (highlighting it
        on every repaint would cost the GUI thread most of its time), and unlabelled code is not guessed at;
        the finished reply is rendered once more in full."""
        self.final = final
        return self._render(text)

    def _render(self, text: str) -> Rendered:
        self._blocks = []
        self._languages = []
        source = fence_bare_code(text)
        self._source_lines = source.count("\n") + 1
        body = self._md.render(source)
        wrapped = f'<div style="color:{self.palette.text};">{body}</div>'
        return Rendered(wrapped, list(self._blocks), list(self._languages))

    def _highlight(self, code: str, lexer: Lexer) -> str:
        key = (lexer.name, code)
        if key not in self._highlighted:
            if len(self._highlighted) >= 64:
                self._highlighted.clear()
            formatter = HtmlFormatter(noclasses=True, nowrap=True, style=self.palette.pygments_style)
            self._highlighted[key] = highlight(code, lexer, formatter)
        return self._highlighted[key]

    def _render_link_close(
        self, renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any
    ) -> str:
        """A link whose text is not its target shows the target too: ``[https://good](http://evil)`` must not
        pass for a link to good."""
        close = str(renderer.renderToken(tokens, idx, options, env))
        start = idx - 1
        while start >= 0 and tokens[start].type != "link_open":
            start -= 1
        target = str(tokens[start].attrGet("href") or "") if start >= 0 else ""
        shown = "".join(token.content for token in tokens[start + 1 : idx])
        if not target or shown.strip() == target:
            return close
        return f'{close} <span style="color:{self.palette.link}; font-size:small;">({html.escape(target)})</span>'

    def _render_inline_code(self, tokens: Sequence[Token], idx: int) -> str:
        code = html.escape(tokens[idx].content)
        return (
            f'<code style="background-color:{self.palette.inline_code_background};'
            f' font-family:monospace;">&nbsp;{code}&nbsp;</code>'
        )

    def _render_fence(self, tokens: Sequence[Token], idx: int) -> str:
        token = tokens[idx]
        code = token.content.rstrip("\n")
        language = (token.info or "").strip().split(" ")[0] if token.type == "fence" else ""
        growing = not self.final and token.map is not None and token.map[1] >= self._source_lines
        lexer = None
        if language:
            try:
                lexer = get_lexer_by_name(language)
            except ClassNotFound:
                lexer = None
        if lexer is None and (inferred := infer_language(code)):
            lexer = get_lexer_by_name(inferred)
        if lexer is None and code.strip() and self.final:
            try:
                lexer = guess_lexer(code)
            except ClassNotFound:
                lexer = None
            # guess_lexer falls back to plain text readily, and to obscure dialects: name only common languages.
            if lexer is not None and lexer.name.lower() not in _GUESSABLE:
                lexer = None
        label = language or (lexer.name if lexer else "text")
        index = len(self._blocks)
        self._blocks.append(code)
        self._languages.append(label)
        body = html.escape(code) if lexer is None or growing else self._highlight(code, lexer)
        p = self.palette
        return (
            f'<table width="100%" cellspacing="0" cellpadding="8" style="background-color:{p.code_background};'
            f' margin-top:6px; margin-bottom:6px;">'
            f'<tr><td><span style="color:{p.code_header}; font-size:small;">{html.escape(label)}</span>'
            f'&nbsp;&nbsp;<a href="copy:{index}" style="color:{p.link}; font-size:small;">Copy</a></td></tr>'
            f'<tr><td><pre style="font-family:monospace; margin:0; white-space:pre-wrap;">{body}</pre></td></tr></table>'
        )


# Lines that open a piece of code, and the language each implies (None: clear code, unclear language).
# Matched case-sensitively and tightly, so prose ("Let me...", "class notes:", "import duties apply") does not
# qualify.
_OPENINGS: list[tuple[re.Pattern[str], str | None]] = [
    (re.compile(r"^(?:async )?def \w+\(|^class [A-Z_]\w*\s*[:(]|^@\w[\w.]*(?:\(.*\))?$"), "python"),
    (
        re.compile(r"^import [\w.]+(?: as \w+)?(?:, [\w.]+(?: as \w+)?)*$|^from [\w.]+ import [\w*(]"),
        "python",
    ),
    (
        re.compile(
            r"^(?:export )?(?:async )?function\s*\*?\s*\w*\s*\(|^(?:const|let|var) \w+\s*=|^import .+ from ['\"]"
        ),
        "javascript",
    ),
    (re.compile(r"^#include\s*[<\"]"), "cpp"),
    (re.compile(r"^(?:pub )?fn \w+|^use [\w:]+(?:::\{[^}]*\})?;$"), "rust"),
    (re.compile(r"^func \w*\s*\(|^func \w+|^package \w+$|^import (?:\"|\($)"), "go"),
    (re.compile(r"^(?:public|private|protected)\b.*[({;=]|^import [\w.]+(?:\.\*)?;$"), "java"),
    # A C-family function signature ending in a brace: int main(void) {
    (re.compile(r"^[A-Za-z_][\w\s*<>:,]*\([^)]*\)\s*(?:const\s*)?\{$"), None),
]
# The languages a guess from Pygments is trusted for: its guesser readily names an obscure dialect.
_GUESSABLE = {"python", "javascript", "typescript", "java", "kotlin", "swift", "go", "rust", "ruby", "php"}
_GUESSABLE |= {"c", "c++", "c#", "lua", "r", "bash", "shell", "sql", "html", "css", "json", "yaml", "toml"}
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")
_CONTINUATION = re.compile(
    r"^[A-Za-z_][\w.]*\(.*\)\s*;?$"  # a call: print(result)
    r"|^[A-Za-z_][\w.\[\]]*\s*[-+*/]?=\s*\S"  # an assignment: result = add(2, 3)
    r"|^\s*[}\])]+[;,]?\s*$"  # closing brackets
    r"|^(?:if|elif|else|for|while|try|except|finally|with)\b.*:$"  # a Python block statement
)
_COMMENT = re.compile(r"^(?:#|//)\s")


def _opening(line: str) -> tuple[bool, str | None]:
    for pattern, language in _OPENINGS:
        if pattern.match(line):
            return True, language
    return False, None


def infer_language(code: str) -> str | None:
    """The language named by the first line that opens like code in one (``def`` → python), if any."""
    for line in code.split("\n"):
        opens, language = _opening(line)
        if opens and language:
            return language
    return None


def fence_bare_code(text: str) -> str:
    """Put code a model wrote without a ``` fence into one.

    Small models often write a function straight into the text. Markdown would fold its indented lines into
    the paragraph above, losing the indentation that is the code's meaning (in Python, its syntax), and it
    would not be highlighted or offered for copying. A run is fenced only when it opens like code (``def``,
    ``#include``, ``function f(`` ...) and has indented lines after it that are not list items, so prose is
    left alone. Fences already in the text are respected, by their own rules (same character, at least as
    long), so code inside them is never fenced twice.
    """
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    open_fence = ""
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if open_fence:
            closes = fence and fence.group(1)[0] == open_fence[0] and len(fence.group(1)) >= len(open_fence)
            if closes and not line.strip().strip(open_fence[0]):
                open_fence = ""
            out.append(line)
            index += 1
            continue
        if fence:
            open_fence = fence.group(1)
            out.append(line)
            index += 1
            continue
        opens, _language = _opening(line)
        if not opens:
            out.append(line)
            index += 1
            continue
        end = _end_of_code(lines, index + 1)
        block = lines[index:end]
        if any(part[:1] in (" ", "\t") and part.strip() and not _LIST_ITEM.match(part) for part in block[1:]):
            out += [f"```{infer_language(chr(10).join(block)) or ''}", *block, "```"]
        else:
            out += block
        index = end
    return "\n".join(out)


def _end_of_code(lines: list[str], start: int) -> int:
    """Where a run of code that began just before ``start`` ends: blank lines and comments inside it are
    kept when code follows them."""
    end = start
    while end < len(lines):
        following = end
        while following < len(lines) and (not lines[following].strip() or _COMMENT.match(lines[following])):
            following += 1
        if following < len(lines) and _continues_code(lines[following]):
            end = following + 1
        else:
            break
    return end


def _continues_code(line: str) -> bool:
    if line[:1] in (" ", "\t"):
        return not _LIST_ITEM.match(line)
    return _opening(line)[0] or bool(_CONTINUATION.match(line))
