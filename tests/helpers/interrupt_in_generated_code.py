"""Run as ``python -m tests.helpers.interrupt_in_generated_code [handled]``: Ctrl+C arrives inside code compiled
from a string (as in a dataclass's generated methods) and is caught; the exit code is 0 unless the interpreter
ends the process by SIGINT anyway. With ``handled``, the terminal's own Ctrl+C handler is installed first."""

from __future__ import annotations

import sys

from app.cli.common import raise_on_interrupt


def main() -> int:
    if "handled" in sys.argv[1:]:
        raise_on_interrupt()
    try:
        exec("import signal\nsignal.raise_signal(signal.SIGINT)\n")
    except KeyboardInterrupt:
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
