"""Turning the bytes of each file format into labelled sections: PDF pages, Word and HTML headings, Markdown and
reStructuredText titles, and runs of lines for plain text and code.

Nothing here trusts the file: every failure a person can cause (a password, a damaged file, a scan without text,
a binary file named .txt) becomes a ``DocumentError`` sentence saying what to do. Text encodings are detected,
not assumed: byte-order marks first, then strict UTF-8, then charset-normalizer.

Memory: a .docx is judged from its zip directory before it is inflated (``archive_check``); pypdf inflates no
stream past 75 MB and no content array past 10,000 parts (its ``Configuration`` limits, left at their defaults);
text over MAX_DOCUMENT_TOKENS is refused as soon as it is seen. The reader runs all of this in a child process
with a memory limit and a deadline, for whatever these limits miss.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import unicodedata
import zipfile
from typing import TYPE_CHECKING, Literal

from app.core.documents.archive_check import check_word_package
from app.core.documents.document import (
    MAX_DOCUMENT_TOKENS,
    DocumentError,
    DocumentKind,
    Section,
    approximate_tokens,
    check_document_size,
)
from app.core.documents.html_text import html_blocks
from app.core.errors import UserError
from app.core.units import human_bytes

if TYPE_CHECKING:
    from pypdf import PdfReader

# What pypdf inflates one stream to at most (its default, which we keep): named in the sentence for a PDF bomb.
ZLIB_MAX_OUTPUT_LENGTH = 75_000_000

log = logging.getLogger(__name__)

# Plain text and code have no headings to cut at; sections of this many lines give usable references.
LINES_PER_SECTION = 120

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


def extract_sections(
    name: str, data: bytes, kind: DocumentKind, max_pages: int, stop: threading.Event
) -> list[Section]:
    """The sections of file ``name`` (its bytes ``data``) read as ``kind``; a PDF stops between pages once
    ``stop`` is set."""
    if kind == "pdf":
        return _pdf_sections(name, data, max_pages, stop)
    if kind == "docx":
        return _docx_sections(name, data)
    text = decode_text(name, data)
    if kind != "html":  # an HTML page's markup is not its text: its size is checked once extracted
        check_document_size(name, text)
    if kind == "html":
        return _html_sections(name, text)
    if kind == "markdown":
        return _headed_sections(text, _markdown_headings(text))
    if kind == "rest":
        return _headed_sections(text, _rest_headings(text))
    return _line_sections(text)


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
    tokens_so_far = 0
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
        tokens_so_far += approximate_tokens(text)
        if tokens_so_far > MAX_DOCUMENT_TOKENS:  # refused now, not after the remaining pages
            check_document_size(name, "\n".join(s.text for s in sections), so_far=number < page_count)
    if not any(s.text.strip() for s in sections):
        if failed_pages == page_count:
            raise damaged
        if _over_inflation_limit(reader):
            raise DocumentError(
                f"{name} has pages whose contents unpack to more than pypdf's limit of "
                f"{human_bytes(ZLIB_MAX_OUTPUT_LENGTH)}, so they were not read (a file made this way can exhaust "
                "the computer's memory). If it is a real document, open it in a PDF viewer and print it to a new "
                "PDF."
            )
        raise DocumentError(
            f"{name}: this PDF has no text to read; it is probably scanned images. Run it through text "
            "recognition (OCR) first, for example with OCRmyPDF or your scanner's software."
        )
    return sections


def _over_inflation_limit(reader: PdfReader, pages_tried: int = 3) -> bool:
    """Whether the first pages' contents stop at pypdf's inflation limit: its text extraction swallows that
    error and returns no text, which would otherwise read as a scan."""
    from pypdf.errors import LimitReachedError

    for page in list(reader.pages)[:pages_tried]:
        try:
            page.get_contents()
        except LimitReachedError:
            return True
        except Exception:  # any other damage is the "no text" case it was
            log.debug("pdf page contents unreadable", exc_info=True)
    return False


# -- Word ----------------------------------------------------------------------------------------------------


def _docx_sections(name: str, data: bytes) -> list[Section]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table
    from lxml import etree

    if data.startswith(_OLE_MAGIC):
        raise DocumentError(
            f"{name} is a password-protected (or very old) Word file. Open it in Word or LibreOffice, remove the "
            "password and save it as .docx, then drop that copy here."
        )
    check_word_package(name, data)
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
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, etree.LxmlError, EOFError) as exc:
        log.info("docx %s failed: %r", name, exc)
        raise DocumentError(
            f"{name} could not be read as a Word document; it may be damaged or not really a .docx. Open it in "
            "Word or LibreOffice and save it again."
        ) from exc
    check_document_size(name, "\n\n".join(text for _, text in blocks))
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


def _html_sections(name: str, text: str) -> list[Section]:
    blocks = html_blocks(text)
    check_document_size(name, "\n\n".join(text for _, text in blocks))
    return _sections_from_blocks(blocks)


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
