"""The bundle's entry point: the same ``main`` as the installed ``llamadesk`` command.

A separate file rather than ``app/__main__.py`` so PyInstaller does not put ``app/`` itself on the bundle's
module path, where ``app/core`` would also be importable as a top-level ``core``.
"""

from app.__main__ import main

main()
