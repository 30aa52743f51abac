"""Reading a dropped file into a Document: the file checks, then its format's extraction under a deadline.

Reading never trusts the file: the size is checked before anything is read, the type comes from the name and is
confirmed by the content (``formats``), and every failure a person can cause becomes a ``DocumentError``
sentence. Parsing runs in a child process under a deadline and a memory limit (``extraction_process``), so a
pathological file costs an error message, not a hung app or its memory. The window calls ``read_document``
from its thread pool, never from the GUI thread.
"""

from __future__ import annotations

import logging
import stat
import threading
from pathlib import Path

from app.core.documents.document import Document, DocumentError, DocumentKind
from app.core.documents.extraction_process import (
    MAX_READER_MEMORY_BYTES,
    ExtractionFailed,
    ReadFigures,
    extract_in_child,
)
from app.core.documents.formats import SUPPORTED_DESCRIPTION
from app.core.units import human_bytes

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 100_000_000
MAX_PDF_PAGES = 3000
EXTRACTION_TIMEOUT_SECONDS = 120.0

PDF_EXTENSIONS = {".pdf"}
DOCX_EXTENSIONS = {".docx"}
MARKDOWN_EXTENSIONS = {".md", ".markdown", ".mdown", ".mkd", ".mkdn"}
REST_EXTENSIONS = {".rst", ".rest"}
HTML_EXTENSIONS = {".html", ".htm", ".xhtml"}
TEXT_EXTENSIONS = {
    ".txt",
    ".text",
    ".log",
    ".csv",
    ".tsv",
    ".org",
    ".adoc",
    ".asciidoc",
    ".tex",
    ".srt",
    ".vtt",
}
CODE_EXTENSIONS = {
    ".py", ".pyi", ".pyw", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".vue", ".svelte", ".c", ".h", ".cc",
    ".cpp", ".cxx", ".hpp", ".hh", ".hxx", ".cs", ".java", ".kt", ".kts", ".go", ".rs", ".rb", ".php", ".pl",
    ".pm", ".swift", ".m", ".mm", ".scala", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".bat", ".cmd", ".sql",
    ".r", ".lua", ".dart", ".hs", ".ml", ".mli", ".ex", ".exs", ".erl", ".clj", ".css", ".scss", ".less",
    ".json", ".jsonl", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".xml", ".gradle", ".cmake", ".mk",
    ".jl", ".zig", ".nim", ".f90", ".asm", ".s", ".proto", ".graphql", ".tf", ".nix", ".el", ".vim",
}  # fmt: skip
TEXT_FILE_NAMES = {
    "readme", "license", "licence", "copying", "authors", "changelog", "news", "notice", "makefile",
    "dockerfile", "containerfile", "gemfile", "rakefile", "procfile", "vagrantfile", "justfile",
}  # fmt: skip
# Types people often drop that we cannot read, with what to do instead.
KNOWN_UNREADABLE = {
    ".doc": "the old Word format (.doc); open it in Word or LibreOffice and save it as .docx",
    ".odt": "an OpenDocument text; save it as .docx or PDF",
    ".rtf": "Rich Text; save it as .docx, PDF or plain text",
    ".pages": "a Pages document; export it as PDF or Word",
    ".epub": "an e-book; convert it to PDF or text",
    ".xls": "a spreadsheet; save the sheet as CSV",
    ".xlsx": "a spreadsheet; save the sheet as CSV",
    ".ods": "a spreadsheet; save the sheet as CSV",
    ".ppt": "a presentation; export it as PDF",
    ".pptx": "a presentation; export it as PDF",
    ".odp": "a presentation; export it as PDF",
}


def read_document(
    path: str | Path,
    *,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    max_pages: int = MAX_PDF_PAGES,
    timeout: float = EXTRACTION_TIMEOUT_SECONDS,
    figures: ReadFigures | None = None,
    cancel: threading.Event | None = None,
) -> Document:
    """Read ``path`` into a Document, or raise DocumentError with a sentence for the person who dropped it.

    The parsing runs in a child process that is killed after ``timeout`` seconds and cannot use more than
    MAX_READER_MEMORY_BYTES (``extraction_process``): parsers can loop or swell on hostile files, and nothing
    must wait for that or pay its memory. ``figures``, when given, receives the time and the child's peak memory.
    Setting ``cancel`` (from another thread) kills the child within moments and raises ReadingStopped.
    """
    path = Path(path)
    kind = _check_file(path, max_bytes)
    try:
        return extract_in_child(
            path,
            kind,
            max_bytes=max_bytes,
            max_pages=max_pages,
            timeout=timeout,
            figures=figures or ReadFigures(),
            cancel=cancel,
        )
    except ExtractionFailed as failure:
        if failure.reason == "deadline":
            raise DocumentError(
                f"Reading {path.name} took longer than {timeout:.0f} s, so it was stopped. The file may be "
                "damaged or unusually complex; try saving or exporting it again, or as plain text."
            ) from None
        if failure.reason == "memory":
            raise DocumentError(
                f"Reading {path.name} needed more than the {human_bytes(MAX_READER_MEMORY_BYTES)} of memory "
                "allowed for one document, so it was stopped. The file may be damaged or made to exhaust "
                "memory; try saving or exporting it again, or save the part you need as a separate file."
            ) from None
        log.error("reading %s failed: %s", path, failure.details)
        raise DocumentError(
            f"{path.name} could not be read (the reader stopped unexpectedly). The file may be damaged; try "
            "saving it again."
        ) from None


def document_kind(path: Path) -> DocumentKind | None:
    """The kind a file's name says it is, or None for a type this app does not read."""
    suffix = path.suffix.lower()
    by_suffix: list[tuple[set[str], DocumentKind]] = [
        (PDF_EXTENSIONS, "pdf"),
        (DOCX_EXTENSIONS, "docx"),
        (MARKDOWN_EXTENSIONS, "markdown"),
        (REST_EXTENSIONS, "rest"),
        (HTML_EXTENSIONS, "html"),
        (TEXT_EXTENSIONS, "text"),
        (CODE_EXTENSIONS, "code"),
    ]
    for extensions, kind in by_suffix:
        if suffix in extensions:
            return kind
    if not suffix or path.name.lower() in TEXT_FILE_NAMES or path.stem.lower() in TEXT_FILE_NAMES:
        return "text"
    return None


def _check_file(path: Path, max_bytes: int) -> DocumentKind:
    name = path.name
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DocumentError(f"{name} was not found. It may have been moved or deleted.") from None
    except OSError as exc:
        raise DocumentError(
            f"{name} could not be opened ({exc.strerror}). Check that you may read it."
        ) from None
    if stat.S_ISDIR(mode):
        raise DocumentError(f"{name} is a folder, not a file. Drop the documents inside it instead.")
    if not stat.S_ISREG(mode):
        raise DocumentError(
            f"{name} is {_special_file_kind(mode)}, not a regular file, so there is no document to read in it. "
            "Save what you want summarized to a file and drop that file instead."
        )
    kind = document_kind(path)
    if kind is None:
        suffix = path.suffix.lower()
        if suffix in KNOWN_UNREADABLE:
            raise DocumentError(
                f"{name} is {KNOWN_UNREADABLE[suffix]}. LlamaDesk reads {SUPPORTED_DESCRIPTION}."
            )
        raise DocumentError(
            f"LlamaDesk can't read {suffix} files like {name}. It reads {SUPPORTED_DESCRIPTION}."
        )
    size = path.stat().st_size
    if size == 0:
        raise DocumentError(f"{name} is empty (0 bytes); there is nothing in it to read.")
    if size > max_bytes:
        raise DocumentError(
            f"{name} is {human_bytes(size)}, over the limit of {human_bytes(max_bytes)} for one document. "
            "Split it into smaller files, or save only the part you need."
        )
    return kind


def _special_file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"
