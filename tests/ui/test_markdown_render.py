"""Markdown to Qt rich text: structure kept, code highlighted and copyable, nothing loaded from outside."""

from __future__ import annotations

from app.ui.markdown_render import _GUESSABLE, DARK, LIGHT, MarkdownRenderer, fence_bare_code


def test_headings_lists_tables_and_inline_code() -> None:
    rendered = MarkdownRenderer(LIGHT).render(
        "# Title\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nUse `len()` here."
    )
    for fragment in ("<h1>Title</h1>", "<li>one</li>", "<table>", "<td>2</td>", "len()&nbsp;</code>"):
        assert fragment in rendered.html
    assert rendered.code_blocks == []


def test_fenced_code_is_highlighted_named_and_copyable() -> None:
    rendered = MarkdownRenderer(DARK).render("Here:\n\n```python\nx = 1  # one\n```")
    assert rendered.code_blocks == ["x = 1  # one"] and rendered.languages == ["python"]
    assert 'href="copy:0"' in rendered.html
    assert "style=" in rendered.html.split("<pre", 1)[1]  # Pygments wrote inline colours


def test_single_newlines_are_line_breaks_and_images_are_not_loaded() -> None:
    rendered = MarkdownRenderer().render("Roses are red,\nviolets are blue.\n\n![x](/etc/passwd)")
    assert "<br" in rendered.html
    assert "<img" not in rendered.html


def test_bare_python_function_is_fenced_with_its_indentation() -> None:
    reply = (
        "Here is a function:\n\n"
        "def reverse_string(text):\n"
        "    return text[::-1]\n\n"
        'print(reverse_string("Hello"))\n\n'
        "It slices the string backwards."
    )
    fenced = fence_bare_code(reply)
    assert fenced.split("\n")[2:7] == [
        "```python",
        "def reverse_string(text):",
        "    return text[::-1]",
        "",
        'print(reverse_string("Hello"))',
    ]
    assert fenced.split("\n")[7] == "```"
    rendered = MarkdownRenderer().render(reply)
    assert rendered.code_blocks == [
        'def reverse_string(text):\n    return text[::-1]\n\nprint(reverse_string("Hello"))'
    ]
    assert "It slices the string backwards." in rendered.html


def test_bare_c_like_code_with_braces_is_fenced() -> None:
    reply = "function add(a, b) {\n  return a + b;\n}\nconsole.log(add(1, 2));"
    rendered = MarkdownRenderer().render(reply)
    assert rendered.code_blocks == [reply] and rendered.languages == ["javascript"]


def test_unlabelled_fence_is_named_by_its_opening_line_not_an_obscure_guess() -> None:
    rendered = MarkdownRenderer().render("```\ndef reverse(s):\n    return s[::-1]\n```")
    assert rendered.languages == ["Python"]
    # Pygments alone names this Python snippet "cplint" (a Prolog dialect); only common languages are shown.
    for snippet in ("x[::-1]\nprint(x[1:-1])", "main :- write(x).\n:- initialization(main)."):
        label = MarkdownRenderer().render(f"```\n{snippet}\n```").languages[0]
        assert label == "text" or label.lower() in _GUESSABLE, label


def test_prose_and_existing_fences_are_left_alone() -> None:
    prose = (
        "Let me explain:\n    this indented line is prose.\n\nfrom here on, nothing is code.\n"
        "class is a keyword in Python.\n- a list\n  - nested"
    )
    assert fence_bare_code(prose) == prose
    fenced = "```python\ndef f():\n    pass\n```"
    assert fence_bare_code(fenced) == fenced
    one_liner = "import os"
    assert fence_bare_code(one_liner) == one_liner
