"""Reading a dropped file into a Document: the file checks, then its format's extraction under a deadline.

Reading never trusts the file: the size is checked before anything is read, the type comes from the name and is
confirmed by the content (``formats``), and every failure a person can cause becomes a ``DocumentError``
sentence. Parsing runs on a worker thread under a deadline (``read_document``), so a pathological PDF costs an
error message, not a hung app. The window calls ``read_document`` from its thread pool, never from the GUI
thread.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from app.core.documents.document import Document, DocumentError, DocumentKind, Section, make_document
from app.core.documents.formats import SUPPORTED_DESCRIPTION, extract_sections
from app.core.errors import UserError
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
) -> Document:
    """Read ``path`` into a Document, or raise DocumentError with a sentence for the person who dropped it.

    The parsing runs on a daemon thread and is given up after ``timeout`` seconds: PDF parsers can loop for a
    long time on hostile files, and nothing must wait for that. The worker checks a stop flag between pages, so
    a PDF stops soon after the deadline; a single page stuck inside the parser finishes in the background
    without blocking anyone.
    """
    path = Path(path)
    kind = _check_file(path, max_bytes)
    outcome: list[Document | BaseException] = []
    stop = threading.Event()

    def work() -> None:
        try:
            outcome.append(_extract(path, kind, max_pages, stop))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append(exc)

    worker = threading.Thread(target=work, name=f"read {path.name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive() or not outcome:
        stop.set()
        raise DocumentError(
            f"Reading {path.name} took longer than {timeout:.0f} s, so it was stopped. The file may be damaged "
            "or unusually complex; try saving or exporting it again, or as plain text."
        )
    result = outcome[0]
    if isinstance(result, BaseException):
        if isinstance(result, UserError):
            raise result
        log.error("reading %s failed", path, exc_info=result)
        raise DocumentError(
            f"{path.name} could not be read ({type(result).__name__}). The file may be damaged; try saving it again."
        ) from result
    return result


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
    if not path.exists():
        raise DocumentError(f"{name} was not found. It may have been moved or deleted.")
    if not path.is_file():
        raise DocumentError(f"{name} is a folder, not a file. Drop the documents inside it instead.")
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


def _extract(path: Path, kind: DocumentKind, max_pages: int, stop: threading.Event) -> Document:
    data = path.read_bytes()
    name = path.name
    sections = extract_sections(name, data, kind, max_pages, stop)
    sections = [s for s in (Section(s.label, _tidy(s.text), s.page) for s in sections) if s.text or s.page]
    if not any(s.text for s in sections):
        raise DocumentError(f"{name} has no text in it; there is nothing to summarize.")
    return make_document(name, kind, sections, path=str(path.resolve()), size=len(data))


def _tidy(text: str) -> str:
    """One newline convention, no trailing spaces, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
