"""Summary styles as menus and command lines name them."""

from __future__ import annotations

import pytest

from app.core.documents.summary_types import STYLE_LABELS, STYLES, summary_style
from app.core.errors import UserError


def test_every_style_has_a_label_and_is_found_by_its_name() -> None:
    assert list(STYLE_LABELS) == list(STYLES)
    assert [summary_style(name) for name in ("brief", "detailed", "points")] == list(STYLES)


def test_an_unknown_style_is_a_sentence_naming_the_choices() -> None:
    with pytest.raises(UserError, match="no summary style called 'short'; choose brief, detailed or points"):
        summary_style("short")
