"""A zip-based document (Word's .docx) judged from its central directory before anything is inflated.

A .docx is a zip. A 1.2 MB one can hold 600 MB of XML, and reading that whole took 3 GB of memory. The central
directory lists each member's compressed and uncompressed size; Python's zipfile never inflates a member past
its listed size (it stops there and fails the CRC check), so those sizes bound what any later reading costs.
The directory also says what the package really is: a spreadsheet or an OpenDocument renamed to .docx gets a
sentence naming it, not "damaged".
"""

from __future__ import annotations

import io
import zipfile

from app.core.documents.document import DocumentError
from app.core.units import human_bytes

MAX_UNCOMPRESSED_BYTES = 200_000_000
MAX_COMPRESSION_RATIO = 100
# Small members compress wildly (a run of spaces in a style sheet); only a large one can exhaust memory.
RATIO_CHECK_FLOOR_BYTES = 1_000_000
# A zip's directory costs about 500 bytes of memory per member; real Word files have tens of them.
MAX_MEMBERS = 10_000
# The package's own description is a small file; a larger one is not read.
_TYPES_READ_LIMIT = 1_000_000

_OTHER_PACKAGES = (  # (a sign in [Content_Types].xml or ODF's mimetype, what the file really is)
    ("spreadsheetml", "an Excel spreadsheet; save the sheet as CSV"),
    ("presentationml", "a PowerPoint presentation; export it as PDF"),
    ("opendocument.text", "an OpenDocument text; save it as .docx or PDF"),
    ("opendocument.spreadsheet", "an OpenDocument spreadsheet; save the sheet as CSV"),
    ("opendocument.presentation", "an OpenDocument presentation; export it as PDF"),
    ("epub", "an e-book; convert it to PDF or text"),
)


def check_word_package(name: str, data: bytes) -> None:
    """Raise DocumentError when the .docx ``data`` would unpack to too much, or is another kind of package.

    A file that is not a zip at all passes: the Word reader gives it the "damaged" sentence.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError):
        return
    with archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise DocumentError(
                f"{name} holds {len(members):,} files inside it, where a Word document has a few dozen; it is "
                "not a normal document, so it was not opened. Open it in Word or LibreOffice and save it again."
            )
        total = sum(member.file_size for member in members)
        if total > MAX_UNCOMPRESSED_BYTES:
            raise DocumentError(
                f"{name} unpacks to {human_bytes(total)}, over the limit of "
                f"{human_bytes(MAX_UNCOMPRESSED_BYTES)} for one document, so it was not opened (a file made "
                "this way can exhaust the computer's memory). If it is a real document, save the part you "
                "need as a separate file."
            )
        for member in members:
            ratio = member.file_size / max(1, member.compress_size)
            if member.file_size > RATIO_CHECK_FLOOR_BYTES and ratio > MAX_COMPRESSION_RATIO:
                raise DocumentError(
                    f"{name} is compressed {ratio:,.0f} to 1 (a Word document is rarely more than 20 to 1), "
                    "so it was not opened: a file made this way can exhaust the computer's memory. If it is a "
                    "real document, open it in Word or LibreOffice and save it again."
                )
        what = _other_package(archive)
    if what is not None:
        raise DocumentError(
            f"{name} is {what}. LlamaDesk reads Word documents (.docx), not this kind of file."
        )


def _other_package(archive: zipfile.ZipFile) -> str | None:
    """What the package is when it is not a Word document, from its own small description file."""
    for description in ("[Content_Types].xml", "mimetype"):
        try:
            member = archive.getinfo(description)
        except KeyError:
            continue
        if member.file_size > _TYPES_READ_LIMIT:
            return None
        try:
            listed = archive.read(member).decode("utf-8", errors="replace").lower()
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
            return None
        if "wordprocessingml" in listed or "ms-word" in listed:
            return None
        for sign, what in _OTHER_PACKAGES:
            if sign in listed:
                return what
        return None
    return None
