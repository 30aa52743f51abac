"""What the static checks of .ci/run (ruff, mypy, lint-imports) do not see: no module in app/ over 800 lines."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
MAX_MODULE_LINES = 800


def test_no_module_is_over_800_lines() -> None:
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(APP.rglob("*.py"))
    }
    assert "app/core/errors.py" in sizes  # the walk found the package
    too_long = sorted(
        ((lines, name) for name, lines in sizes.items() if lines > MAX_MODULE_LINES), reverse=True
    )
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines (split them):\n" + "\n".join(
        f"  {name}: {lines} lines" for lines, name in too_long
    )
