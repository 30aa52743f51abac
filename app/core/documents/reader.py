"""Documents dropped into a conversation: a file read into labelled sections of text (pages, headings, lines).

Reading never trusts the file: the size is checked before anything is read, the type comes from the name and is
confirmed by the content, the text encoding is detected (byte-order marks first, then strict UTF-8, then
charset-normalizer), and every failure a person can cause becomes a ``DocumentError`` sentence. Parsing runs on
a worker thread under a deadline (``read_document``), so a pathological PDF costs an error message, not a hung
app. The window calls ``read_document`` from its thread pool, never from the GUI thread.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

from app.core.errors import UserError
from app.core.units import human_bytes

log = logging.getLogger(__name__)

DocumentKind = Literal["pdf", "docx", "text", "markdown", "rest", "html", "code"]

MAX_DOCUMENT_BYTES = 100_000_000
MAX_PDF_PAGES = 3000
EXTRACTION_TIMEOUT_SECONDS = 120.0
# Plain text and code have no headings to cut at; sections of this many lines give usable references.
LINES_PER_SECTION = 120

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
SUPPORTED_DESCRIPTION = (
    "PDF, Word (.docx), plain text, Markdown, reStructuredText, HTML and source code files"
)

_BYTE_ORDER_MARKS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_PREFERRED_CODE_PAGES = ["cp1252", "cp1250", "cp1251", "iso8859_15", "latin_1", "cp1253", "cp1254", "cp1257", "cp1255", "cp1256", "cp932", "gb18030", "big5", "euc_kr"]  # fmt: skip
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # encrypted Office files are OLE containers, not zips


class DocumentError(UserError):
    """A file that cannot be read as a document; the message says why and what to do."""


@dataclass(frozen=True)
class Section:
    """A labelled part of a document: "page 3", 'section "Results"', "lines 1-120"."""

    label: str
    text: str
    page: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "text": self.text, "page": self.page}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Section:
        page = data.get("page")
        return cls(
            label=str(data["label"]), text=str(data["text"]), page=page if isinstance(page, int) else None
        )


@dataclass(frozen=True)
class Document:
    """The text of one file, in sections that keep their page numbers or headings.

    ``content_hash`` is the sha256 of the extracted text: the same words give the same hash (and so reuse cached
    summaries) whichever file they arrived in.
    """

    name: str
    path: str
    kind: DocumentKind
    sections: list[Section]
    text: str = field(repr=False)
    content_hash: str
    size: int  # bytes of the original file

    @property
    def page_count(self) -> int | None:
        pages = [s.page for s in self.sections if s.page is not None]
        return max(pages) if pages else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (the text is rebuilt from the sections on load)."""
        return {
            "name": self.name,
            "path": self.path,
            "kind": self.kind,
            "sections": [s.to_dict() for s in self.sections],
            "content_hash": self.content_hash,
            "size": self.size,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Document:
        sections = [Section.from_dict(s) for s in data["sections"]]
        return cls(
            name=str(data["name"]),
            path=str(data["path"]),
            kind=data["kind"],
            sections=sections,
            text=join_sections(sections),
            content_hash=str(data["content_hash"]),
            size=int(data["size"]),
        )


def join_sections(sections: list[Section]) -> str:
    return "\n\n".join(s.text for s in sections if s.text)


def make_document(
    name: str, kind: DocumentKind, sections: list[Section], *, path: str = "", size: int = 0
) -> Document:
    """A document from sections already in hand (pasted text, tests, the extractors below)."""
    text = join_sections(sections)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Document(name, path, kind, sections, text, digest, size or len(text.encode("utf-8")))


# -- reading a file ------------------------------------------------------------------------------------------


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
    if kind == "pdf":
        sections = _pdf_sections(name, data, max_pages, stop)
    elif kind == "docx":
        sections = _docx_sections(name, data)
    else:
        text = decode_text(name, data)
        if kind == "html":
            sections = _html_sections(text)
        elif kind == "markdown":
            sections = _headed_sections(text, _markdown_headings(text))
        elif kind == "rest":
            sections = _headed_sections(text, _rest_headings(text))
        else:
            sections = _line_sections(text)
    sections = [s for s in (Section(s.label, _tidy(s.text), s.page) for s in sections) if s.text or s.page]
    if not any(s.text for s in sections):
        raise DocumentError(f"{name} has no text in it; there is nothing to summarize.")
    return make_document(name, kind, sections, path=str(path.resolve()), size=len(data))


# -- text encodings ------------------------------------------------------------------------------------------


def decode_text(name: str, data: bytes) -> str:
    """Decode bytes whose encoding nobody told us: a byte-order mark, else strict UTF-8, else detection."""
    for mark, encoding in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            return data[len(mark) :].decode(encoding, errors="replace").lstrip("\ufeff")
    binary = DocumentError(
        f"{name} looks like a binary file, not text. LlamaDesk reads {SUPPORTED_DESCRIPTION}; "
        "check that the file is what its name says."
    )
    if b"\x00" in data[:65536]:
        raise binary
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        import charset_normalizer

        matches = list(charset_normalizer.from_bytes(data))
        if not matches:
            raise binary from None
        # On short texts several code pages decode with equal (zero) chaos and the detector's pick among them is
        # close to arbitrary (Mac Turkish for German, say); among those ties, the code pages in daily use win.
        least_chaos = min(m.chaos for m in matches)
        tied = [m for m in matches if m.chaos <= least_chaos + 0.01]
        tied.sort(
            key=lambda m: (
                _PREFERRED_CODE_PAGES.index(m.encoding) if m.encoding in _PREFERRED_CODE_PAGES else 99
            )
        )
        text = str(tied[0])
    sample = text[:65536]
    controls = sum(1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t\f\v")
    if sample and controls / len(sample) > 0.02:
        raise binary
    return text


def _tidy(text: str) -> str:
    """One newline convention, no trailing spaces, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# -- PDF -----------------------------------------------------------------------------------------------------


def _pdf_sections(name: str, data: bytes, max_pages: int, stop: threading.Event) -> list[Section]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    damaged = DocumentError(
        f"{name} could not be read as a PDF; it may be damaged or incomplete. Open it in a PDF viewer and save "
        "a new copy, or download it again."
    )
    locked = DocumentError(
        f"{name} is protected with a password. Open it in a PDF viewer, enter the password and save a copy "
        "without protection, then drop that copy here."
    )
    # pypdf logs every repair it makes to a damaged file; a person can do nothing with those lines.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    if b"%PDF-" not in data[:1024]:
        raise damaged
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                # Many PDFs are encrypted only to restrict printing or copying, with an empty open password.
                if not reader.decrypt(""):
                    raise locked
            except DependencyError as exc:
                raise DocumentError(
                    f"{name} is encrypted in a way this installation cannot open ({exc}). Save an unprotected "
                    "copy from a PDF viewer."
                ) from exc
        page_count = len(reader.pages)
    except UserError:
        raise
    except FileNotDecryptedError as exc:
        raise locked from exc
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        log.info("pdf %s failed to open: %r", name, exc)
        raise damaged from exc
    if page_count == 0:
        raise damaged
    if page_count > max_pages:
        raise DocumentError(
            f"{name} has {page_count} pages; LlamaDesk reads documents of up to {max_pages} pages. "
            "Save the part you need as a separate PDF."
        )
    sections: list[Section] = []
    failed_pages = 0
    for number in range(1, page_count + 1):
        if stop.is_set():
            raise DocumentError(f"Reading {name} was stopped.")
        try:
            text = reader.pages[number - 1].extract_text() or ""
        except FileNotDecryptedError as exc:
            raise locked from exc
        except Exception:  # one bad page must not cost the other pages
            log.info("pdf %s: page %d failed", name, number, exc_info=True)
            failed_pages += 1
            text = ""
        sections.append(Section(f"page {number}", text, page=number))
    if not any(s.text.strip() for s in sections):
        if failed_pages == page_count:
            raise damaged
        raise DocumentError(
            f"{name}: this PDF has no text to read; it is probably scanned images. Run it through text "
            "recognition (OCR) first, for example with OCRmyPDF or your scanner's software."
        )
    return sections


# -- Word ----------------------------------------------------------------------------------------------------


def _docx_sections(name: str, data: bytes) -> list[Section]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    if data.startswith(_OLE_MAGIC):
        raise DocumentError(
            f"{name} is a password-protected (or very old) Word file. Open it in Word or LibreOffice, remove the "
            "password and save it as .docx, then drop that copy here."
        )
    try:
        word = docx.Document(io.BytesIO(data))
        blocks: list[tuple[str | None, str]] = []  # (heading text or None, block text)
        for item in word.iter_inner_content():
            if isinstance(item, Table):
                rows = [" | ".join(cell.text.strip() for cell in row.cells) for row in item.rows]
                blocks.append((None, "\n".join(rows)))
                continue
            text = item.text
            style = (item.style.name if item.style is not None else "") or ""
            is_heading = style.startswith("Heading") or style == "Title"
            blocks.append((text.strip() if is_heading and text.strip() else None, text))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        log.info("docx %s failed: %r", name, exc)
        raise DocumentError(
            f"{name} could not be read as a Word document; it may be damaged or not really a .docx. Open it in "
            "Word or LibreOffice and save it again."
        ) from exc
    return _sections_from_blocks(blocks)


def _sections_from_blocks(blocks: list[tuple[str | None, str]]) -> list[Section]:
    """Group (heading, text) blocks into sections that start at each heading."""
    sections: list[Section] = []
    label = "start"
    lines: list[str] = []
    for heading, text in blocks:
        if heading is not None:
            if any(line.strip() for line in lines):
                sections.append(Section(label, "\n\n".join(lines)))
            label = f'section "{_short(heading)}"'
            lines = []
        lines.append(text)
    if any(line.strip() for line in lines):
        sections.append(Section(label, "\n\n".join(lines)))
    if len(sections) == 1 and sections[0].label == "start":
        return _line_sections(sections[0].text, unit="paragraphs")
    return sections


def _short(heading: str, limit: int = 60) -> str:
    heading = " ".join(heading.split())
    return heading if len(heading) <= limit else heading[: limit - 1].rstrip() + "…"


# -- HTML ----------------------------------------------------------------------------------------------------


class _HTMLText(HTMLParser):
    """Text as a reader sees it: no markup, no scripts or styles, a block break where the layout breaks."""

    SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "head", "iframe", "object"})
    BLOCKS = frozenset({
        "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer", "nav",
        "blockquote", "pre", "hr", "dt", "dd", "figcaption", "h1", "h2", "h3", "h4", "h5", "h6", "title", "main",
    })  # fmt: skip
    SECTION_HEADINGS = frozenset({"h1", "h2", "h3"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str | None, str]] = []
        self._parts: list[str] = []
        self._skip_depth = 0
        self._heading: list[str] | None = None
        self._in_pre = 0

    def _flush(self) -> None:
        text = "".join(self._parts)
        if not self._in_pre:
            text = re.sub(r"[ \t\r\n]+", " ", text)
        if text.strip():
            self.blocks.append((None, text.strip() if not self._in_pre else text))
        self._parts = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self._skip_depth += 1
            return
        if tag in self.BLOCKS:
            self._flush()
        if tag == "pre":
            self._in_pre += 1
        if tag in self.SECTION_HEADINGS and not self._skip_depth:
            self._heading = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED:
            self._skip_depth = max(0, self._skip_depth - 1)
            return
        if tag == "pre":
            self._flush()
            self._in_pre = max(0, self._in_pre - 1)
        if tag in self.SECTION_HEADINGS and self._heading is not None:
            heading = " ".join("".join(self._heading).split())
            self._heading = None
            self._parts = []
            if heading:
                self.blocks.append((heading, heading))
            return
        if tag in self.BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._heading is not None:
            self._heading.append(data)
        self._parts.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def _html_sections(text: str) -> list[Section]:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    return _sections_from_blocks(parser.blocks)


# -- Markdown, reStructuredText, plain text, code -----------------------------------------------------------

_MARKDOWN_ATX = re.compile(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_MARKDOWN_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)\s*$")
_REST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+:.<>_])\1{2,}\s*$")


def _markdown_headings(text: str) -> dict[int, str]:
    """Line index -> heading, for ATX (# Title) and setext (Title / =====) headings outside code fences."""
    headings: dict[int, str] = {}
    lines = text.splitlines()
    fenced = False
    for i, line in enumerate(lines):
        if _MARKDOWN_FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        match = _MARKDOWN_ATX.match(line)
        if match:
            headings[i] = match.group(1)
        elif (
            i > 0
            and _SETEXT.match(line)
            and lines[i - 1].strip()
            and not _MARKDOWN_ATX.match(lines[i - 1])
            and (line.strip().startswith("=") or len(lines[i - 1].strip()) < 80)
        ):
            headings[i - 1] = lines[i - 1].strip()
    return headings


def _rest_headings(text: str) -> dict[int, str]:
    """Line index -> title, for reST titles underlined (and maybe overlined) with punctuation."""
    headings: dict[int, str] = {}
    lines = text.splitlines()
    for i in range(1, len(lines)):
        title = lines[i - 1].strip()
        if (
            _REST_ADORNMENT.match(lines[i])
            and title
            and not _REST_ADORNMENT.match(lines[i - 1])
            and len(lines[i].strip()) >= len(title)
        ):
            overlined = i >= 2 and lines[i - 2].strip() == lines[i].strip()
            headings[i - 2 if overlined else i - 1] = title
    return headings


def _headed_sections(text: str, headings: dict[int, str]) -> list[Section]:
    if not headings:
        return _line_sections(text)
    sections: list[Section] = []
    lines = text.splitlines()
    label = "start"
    start = 0
    for index in sorted(headings):
        if index > start:
            sections.append(Section(label, "\n".join(lines[start:index])))
        label = f'section "{_short(headings[index])}"'
        start = index
    sections.append(Section(label, "\n".join(lines[start:])))
    return sections


def _line_sections(text: str, unit: Literal["lines", "paragraphs"] = "lines") -> list[Section]:
    """Cut text without headings into labelled runs of lines (or paragraphs), preferring blank lines as cuts."""
    if unit == "paragraphs":
        paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
        per = 20
        return [
            Section(
                f"paragraphs {i + 1}-{min(i + per, len(paragraphs))}" if len(paragraphs) > 1 else "text",
                "\n\n".join(paragraphs[i : i + per]),
            )
            for i in range(0, len(paragraphs), per)
        ]
    lines = text.splitlines()
    sections: list[Section] = []
    start = 0
    while start < len(lines):
        end = min(len(lines), start + LINES_PER_SECTION)
        if end < len(lines):
            # Cut at the last blank line in the second half of the window, when there is one.
            for candidate in range(end, start + LINES_PER_SECTION // 2, -1):
                if not lines[candidate - 1].strip():
                    end = candidate
                    break
        label = f"lines {start + 1}-{end}" if end > start + 1 else f"line {end}"
        sections.append(Section(label, "\n".join(lines[start:end])))
        start = end
    return sections


def describe(document: Document, count_tokens: Callable[[str], int] | None = None) -> str:
    """One line for a document card or the CLI: name, pages or sections, size in words (or tokens)."""
    parts = [document.name]
    pages = document.page_count
    parts.append(f"{pages} pages" if pages else f"{len(document.sections)} sections")
    if count_tokens is not None:
        parts.append(f"{count_tokens(document.text)} tokens")
    else:
        parts.append(f"{len(document.text.split())} words")
    return ", ".join(parts)
