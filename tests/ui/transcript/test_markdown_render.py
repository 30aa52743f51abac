"""Markdown to Qt rich text: structure kept, code highlighted and copyable, nothing loaded from outside."""

from __future__ import annotations

from app.ui.transcript.markdown_render import _GUESSABLE, DARK, LIGHT, MarkdownRenderer, fence_bare_code


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


def test_prose_that_opens_like_code_with_an_indented_list_stays_prose() -> None:
    for opening in (
        "function of the heart:",
        "static electricity builds up when:",
        "import duties apply when:",
    ):
        prose = f"{opening}\n  - the first point\n  - the second point"
        assert fence_bare_code(prose) == prose
    notes = "class notes:\n    bring the textbook"
    assert fence_bare_code(notes) == notes


def test_a_whole_python_script_is_one_block() -> None:
    script = (
        "import math\n\n# Compute the area\n@lru_cache\ndef area(r):\n    return math.pi * r * r\n\n"
        'def main():\n    print(area(2))\n\nif __name__ == "__main__":\n    main()\nresult = area(3)\nprint(result)'
    )
    rendered = MarkdownRenderer().render(f"Here you go:\n\n{script}\n\nRun it with Python 3.")
    assert rendered.code_blocks == [script] and rendered.languages == ["python"]
    assert "<h1>" not in rendered.html and "<strong>" not in rendered.html


def test_c_and_go_programs_are_fenced_and_named() -> None:
    c_program = '#include <stdio.h>\n\nint main(void) {\n    printf("hi\\n");\n    return 0;\n}'
    go_program = 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hi")\n}'
    for program, language in ((c_program, "cpp"), (go_program, "go")):
        rendered = MarkdownRenderer().render(program)
        assert rendered.code_blocks == [program] and rendered.languages == [language]


def test_fences_nest_by_their_own_rules() -> None:
    outer = "````markdown\n```python\ndef f():\n    pass\n```\n````"
    assert fence_bare_code(outer) == outer
    tilde = "```text\n~~~\n```\ndef g():\n    return 1"
    assert fence_bare_code(tilde).endswith("```python\ndef g():\n    return 1\n```")


def test_imports_name_their_own_language() -> None:
    assert MarkdownRenderer().render("```\nimport React from 'react';\n```").languages == ["JavaScript"]
    assert MarkdownRenderer().render("```\nimport java.util.List;\n```").languages == ["Java"]


def test_while_streaming_the_growing_block_is_plain_and_finished_blocks_are_highlighted_once() -> None:
    renderer = MarkdownRenderer()
    done = "```python\nx = 1\n```\n\n"
    growing = "```python\ndef long_function():\n    y = 2"
    streamed = renderer.render(done + growing, final=False)
    first, second = streamed.html.split("<pre", 2)[1:]
    assert "<span" in first  # the finished block is highlighted
    assert "<span" not in second  # the block still being written is not, yet
    assert len(renderer._highlighted) == 1
    finished = renderer.render(done + growing + "\n```", final=True)
    assert finished.html.count("<span style") > streamed.html.count("<span style")


def test_a_link_whose_text_is_another_address_shows_its_real_target() -> None:
    rendered = MarkdownRenderer().render(
        "See [https://good.example](http://evil.example/x) and [docs](https://docs.example)."
    )
    assert "(http://evil.example/x)" in rendered.html
    assert "(https://docs.example)" in rendered.html  # any text that is not the target itself
    plain = MarkdownRenderer().render("[https://same.example](https://same.example)")
    assert "(https://same.example)" not in plain.html
