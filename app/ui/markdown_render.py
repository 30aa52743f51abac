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

from markdown_it import MarkdownIt
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
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
        self.guess_languages = True
        # markdown-it binds rule functions to its renderer, so they take the renderer as first argument.
        self._md.add_render_rule("fence", lambda _r, tokens, idx, _o, _e: self._render_fence(tokens, idx))
        self._md.add_render_rule(
            "code_block", lambda _r, tokens, idx, _o, _e: self._render_fence(tokens, idx)
        )
        self._md.add_render_rule(
            "code_inline", lambda _r, tokens, idx, _o, _e: self._render_inline_code(tokens, idx)
        )
        self._blocks: list[str] = []
        self._languages: list[str] = []

    def render(self, text: str, *, final: bool = True) -> Rendered:
        """``final=False`` while a reply streams: unlabelled code is not guessed at (slow, and the guess
        changes as the block grows); the finished reply is rendered once more with the guess."""
        self.guess_languages = final
        return self._render(text)

    def _render(self, text: str) -> Rendered:
        self._blocks = []
        self._languages = []
        body = self._md.render(fence_bare_code(text))
        wrapped = f'<div style="color:{self.palette.text};">{body}</div>'
        return Rendered(wrapped, list(self._blocks), list(self._languages))

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
        lexer = None
        if language:
            try:
                lexer = get_lexer_by_name(language)
            except ClassNotFound:
                lexer = None
        if lexer is None and (inferred := infer_language(code)):
            lexer = get_lexer_by_name(inferred)
        if lexer is None and code.strip() and self.guess_languages:
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
        if lexer is not None:
            formatter = HtmlFormatter(noclasses=True, nowrap=True, style=self.palette.pygments_style)
            body = highlight(code, lexer, formatter)
        else:
            body = html.escape(code)
        p = self.palette
        return (
            f'<table width="100%" cellspacing="0" cellpadding="8" style="background-color:{p.code_background};'
            f' margin-top:6px; margin-bottom:6px;">'
            f'<tr><td><span style="color:{p.code_header}; font-size:small;">{html.escape(label)}</span>'
            f'&nbsp;&nbsp;<a href="copy:{index}" style="color:{p.link}; font-size:small;">Copy</a></td></tr>'
            f'<tr><td><pre style="font-family:monospace; margin:0;">{body}</pre></td></tr></table>'
        )


# Lines that open a piece of code, and the language each implies; matched case-sensitively, so prose ("Let
# me...", "From here...") does not qualify.
_OPENINGS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(?:(?:async )?def \w+\(|class \w+[:(]|import \w|from [\w.]+ import )"), "python"),
    (re.compile(r"^(?:(?:export )?(?:async )?function\b|(?:const|let|var) \w+\s*=)"), "javascript"),
    (re.compile(r"^#include\b"), "cpp"),
    (re.compile(r"^(?:pub )?fn \w+"), "rust"),
    (re.compile(r"^(?:func \w+|package \w+)"), "go"),
    (re.compile(r"^(?:public|private|protected|static) [\w<>\[\]]+ \w"), "java"),
]
# The languages a guess from Pygments is trusted for: its guesser readily names an obscure dialect.
_GUESSABLE = frozenset(
    "python javascript typescript c c++ c# java kotlin swift go rust ruby php lua r bash shell sql html css json "
    "yaml toml".split()
)


def infer_language(code: str) -> str | None:
    """The language named by the first line that opens like code in one (``def`` → python), if any."""
    for line in code.split("\n"):
        for pattern, language in _OPENINGS:
            if pattern.match(line):
                return language
    return None


_CALL_LINE = re.compile(r"^[A-Za-z_][\w.]*\(.*\)\s*;?$")
_CLOSING_LINE = re.compile(r"^\s*[}\])]+;?\s*$")


def fence_bare_code(text: str) -> str:
    """Put code a model wrote without a ``` fence into one.

    Small models often write a function straight into the text. Markdown would fold its indented lines into
    the paragraph above, losing the indentation that is the code's meaning (in Python, its syntax), and it
    would not be highlighted or offered for copying. A run is fenced only when it opens like code (``def``,
    ``class``, ``function``, ``#include`` ...) and has indented lines after it, so prose is left alone.
    """
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    in_fence = False
    while index < len(lines):
        line = lines[index]
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        if in_fence or infer_language(line) is None:
            out.append(line)
            index += 1
            continue
        end = index + 1
        while end < len(lines):
            following = end
            while following < len(lines) and not lines[following].strip():
                following += 1  # a blank line inside a function does not end it
            if following < len(lines) and _continues_code(lines[following]):
                end = following + 1
            else:
                break
        block = lines[index:end]
        if any(part.startswith((" ", "\t")) and part.strip() for part in block[1:]):
            out += [f"```{infer_language(line) or ''}", *block, "```"]
        else:
            out += block
        index = end
    return "\n".join(out)


def _continues_code(line: str) -> bool:
    return (
        line.startswith((" ", "\t"))
        or infer_language(line) is not None
        or bool(_CALL_LINE.match(line))
        or bool(_CLOSING_LINE.match(line))
    )
