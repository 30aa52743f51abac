"""``llamadesk`` and ``python -m app``: a terminal command, or the window when none is given."""

from __future__ import annotations

import sys


def main() -> None:
    from app.cli import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
