"""``llamadesk`` and ``python -m app``: a terminal command, or the window when none is given."""

from __future__ import annotations

import sys


def main() -> None:
    if getattr(sys, "frozen", False):
        # Documents are read in a child process; in the desktop bundle that child is this same executable.
        # From source the child is a plain interpreter, so the command line need not load multiprocessing.
        import multiprocessing

        multiprocessing.freeze_support()
    from app.cli import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
