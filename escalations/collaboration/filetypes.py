"""Which files may be attached, decided by their content (magic bytes), never by the name or the browser's claim:
a Windows or Linux executable renamed report.pdf is refused."""

from __future__ import annotations

from pathlib import PurePath

import filetype

# sniffed kind -> (MIME type sent back, the names' extensions that may carry it)
ALLOWED = {
    "pdf": ("application/pdf", {".pdf"}),
    "png": ("image/png", {".png"}),
    "jpg": ("image/jpeg", {".jpg", ".jpeg"}),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", {".xlsx"}),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", {".docx"}),
    "pptx": ("application/vnd.openxmlformats-officedocument.presentationml.presentation", {".pptx"}),
}
# Plain text has no magic number: it is text when it decodes as UTF-8 and holds no NUL byte.
TEXT = {".csv": "text/csv", ".txt": "text/plain"}
HEAD_BYTES = 8192
ALLOWED_NAMES = "PDF, PNG, JPEG, Excel (.xlsx), Word (.docx), PowerPoint (.pptx), CSV or plain text"


def sniff(name: str, head: bytes) -> str:
    """The MIME type to store for a file named `name` starting with `head`, or ValueError saying why not."""
    extension = PurePath(name).suffix.lower()
    kind = filetype.guess(head)
    if kind is not None:
        if kind.extension in ("exe", "elf"):
            raise ValueError(f"{name} is a program, not a document; programs cannot be attached.")
        if kind.extension not in ALLOWED:
            raise ValueError(f"{name} is a {kind.extension.upper()} file; attach a {ALLOWED_NAMES} file.")
        mime, extensions = ALLOWED[kind.extension]
        if extension not in extensions:
            named = f"named {extension}" if extension else "named without an extension"
            raise ValueError(
                f"{name} holds a {kind.extension.upper()} file but is {named}; rename it to {sorted(extensions)[0]}."
            )
        return mime
    if extension in TEXT and b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A multi-byte character cut at the end of the head is still text.
            if exc.start < len(head) - 3:
                raise ValueError(f"{name} is not UTF-8 text; save it as UTF-8 and attach it again.") from None
        return TEXT[extension]
    raise ValueError(f"{name} is not a file type that may be attached; attach a {ALLOWED_NAMES} file.")
