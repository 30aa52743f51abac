"""Markdown to the HTML subset Qt's rich text understands, with code blocks highlighted by Pygments.

Qt's QTextDocument renders HTML 4 with inline styles, not CSS classes, so Pygments writes inline styles and
code blocks become one-cell tables (the only way to give a block a background and padding in Qt rich text).
Each code block gets a header naming its language and a ``copy:N`` link the view turns into a clipboard copy.

Rendering first makes a ``Template``: the HTML with each palette colour left as a marker and each code block kept
as its Pygments tokens. Colours are applied last, so a theme change re-colours a template without parsing the
Markdown or lexing the code again.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
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


Tokens = tuple[tuple[Any, str], ...]
# Markers in a template: a palette field's name, or the number of a highlighted code block, between NUL
# characters. markdown-it turns every NUL of its input into U+FFFD, so no text can forge one.
_MARKER = re.compile(r"\x00(?:([a-z_]+)|#(\d+))\x00")


@dataclass
class Template:
    """Rendered Markdown waiting for its colours: ``markup`` with markers, the highlighted code as tokens.

    ``final_sensitive`` says a full (final) render would differ: an unlabelled code block was left unguessed.
    """

    markup: str
    code: list[Tokens] = field(default_factory=list)
    code_blocks: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    final_sensitive: bool = False

    def html(self, palette: Palette) -> str:
        """The body's HTML in ``palette``'s colours (without the wrapper ``wrap_body`` adds)."""

        def colour(match: re.Match[str]) -> str:
            if match.group(1):
                return str(getattr(palette, match.group(1)))
            return format_code(self.code[int(match.group(2))], palette.pygments_style)

        return _MARKER.sub(colour, self.markup)


def wrap_body(body: str, palette: Palette) -> str:
    return f'<div style="color:{palette.text};">{body}</div>'


_FORMATTED: dict[tuple[int, str], tuple[Tokens, str]] = {}


def format_code(tokens: Tokens, style: str) -> str:
    """Tokens as inline-styled HTML; kept per token list and style, so repaints and theme changes reuse it."""
    key = (id(tokens), style)
    cached = _FORMATTED.get(key)
    if cached is not None and cached[0] is tokens:
        return cached[1]
    if len(_FORMATTED) >= 4096:
        _FORMATTED.clear()
    formatter = HtmlFormatter(noclasses=True, nowrap=True, style=style)
    out = _Collect()
    formatter.format(iter(tokens), out)
    _FORMATTED[key] = (tokens, out.text)
    return out.text


class _Collect:
    """The file-like object Pygments formatters write to."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)


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
        self._template = Template("")
        self._first_code_index = 0
        self._source_lines = 0
        # Lexed code by (lexer, code): a streaming reply re-renders ~30 times a second, and its finished code
        # blocks do not change.
        self._highlighted: dict[tuple[str, str], Tokens] = {}

    def render(self, text: str, *, final: bool = True) -> Rendered:
        """``final=False`` while a reply streams: the block still being written is shown plain (highlighting it
        on every repaint would cost the GUI thread most of its time), and unlabelled code is not guessed at;
        the finished reply is rendered once more in full."""
        template = self.render_template(text, final=final)
        return Rendered(
            wrap_body(template.html(self.palette), self.palette),
            list(template.code_blocks),
            list(template.languages),
        )

    def render_template(
        self, text: str, *, final: bool = True, growing_end: bool = True, first_code_index: int = 0
    ) -> Template:
        """``text`` rendered, its colours left to apply. ``growing_end=False`` for a part of a reply that is
        complete although more follows it (its last code block is not being written); ``first_code_index``
        numbers its code blocks after those of the parts before it."""
        self.final = final
        self._template = Template("")
        self._first_code_index = first_code_index
        source = fence_bare_code(text)
        self._source_lines = source.count("\n") + 1 if growing_end else 1 << 60
        template = self._template
        template.markup = self._md.render(source)
        return template

    def parse(self, source: str) -> list[Token]:
        """markdown-it's tokens for ``source`` (already through ``fence_bare_code``)."""
        return self._md.parse(source)

    def _highlight(self, code: str, lexer: Lexer) -> str:
        key = (lexer.name, code)
        tokens = self._highlighted.get(key)
        if tokens is None:
            if len(self._highlighted) >= 256:
                del self._highlighted[next(iter(self._highlighted))]  # the oldest
            tokens = self._highlighted[key] = tuple(lexer.get_tokens(code))
        self._template.code.append(tokens)
        return f"\x00#{len(self._template.code) - 1}\x00"

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
        return f'{close} <span style="color:\x00link\x00; font-size:small;">({html.escape(target)})</span>'

    def _render_inline_code(self, tokens: Sequence[Token], idx: int) -> str:
        code = html.escape(tokens[idx].content)
        return (
            '<code style="background-color:\x00inline_code_background\x00;'
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
        if lexer is None and code.strip() and not self.final:
            self._template.final_sensitive = True  # the final render will guess its language
        if lexer is None and code.strip() and self.final:
            try:
                lexer = guess_lexer(code)
            except ClassNotFound:
                lexer = None
            # guess_lexer falls back to plain text readily, and to obscure dialects: name only common languages.
            if lexer is not None and lexer.name.lower() not in _GUESSABLE:
                lexer = None
        label = language or (lexer.name if lexer else "text")
        template = self._template
        index = self._first_code_index + len(template.code_blocks)
        template.code_blocks.append(code)
        template.languages.append(label)
        body = html.escape(code) if lexer is None or growing else self._highlight(code, lexer)
        return (
            '<table width="100%" cellspacing="0" cellpadding="8" style="background-color:\x00code_background\x00;'
            ' margin-top:6px; margin-bottom:6px;">'
            '<tr><td><span style="color:\x00code_header\x00; font-size:small;">'
            f"{html.escape(label)}</span>"
            f'&nbsp;&nbsp;<a href="copy:{index}" style="color:\x00link\x00; font-size:small;">Copy</a></td></tr>'
            f'<tr><td><pre style="font-family:monospace; margin:0; white-space:pre-wrap;">{body}</pre></td></tr></table>'
        )


def warm_up_highlighting() -> None:
    """Import what highlighting needs, ahead of the first code block: Pygments imports each lexer module on
    first use (~100 ms for Python here) and its guesser imports them all (~0.5 s), which on the GUI thread would
    stall the first reply with code. Run on a worker thread at start-up."""
    for name in ("python", "javascript", "typescript", "bash", "c", "cpp", "java", "go", "rust", "json"):
        get_lexer_by_name(name)
    guess_lexer("int main(void) { return 0; }")
    for palette in (LIGHT, DARK):
        HtmlFormatter(noclasses=True, nowrap=True, style=palette.pygments_style)


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
