"""LlamaDesk: run LLaMA-family language models on your own computer."""

__version__ = "0.1.0"
APP_NAME = "LlamaDesk"
# The reverse-DNS id of the desktop file, metainfo and icons; the window announces it to the desktop.
APP_ID = "io.github.llamadesk.LlamaDesk"
