"""PDF text, page by page (pypdf), with the first line of each page so chunks can cite pages.

pypdf raises many exception types on damaged files; every failure becomes a ``Skipped`` reason.
"""

from __future__ import annotations

import io

from ..documents import Candidate, Document, Skipped
from .decode import normalise_newlines


def _short_error(exc: BaseException, limit: int = 120) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_pdf(candidate: Candidate, data: bytes) -> Document | Skipped:
    path = candidate.path
    try:
        from pypdf import PdfReader
    except ImportError:  # pragma: no cover - pypdf is a dependency
        return Skipped(path, "PDF could not be parsed: pypdf is not installed")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _try_empty_password(reader):
            return Skipped(path, "PDF could not be parsed: encrypted")
        pages = list(reader.pages)
    except Exception as exc:  # pypdf raises many exception types on bad input
        return Skipped(path, f"PDF could not be parsed: {_short_error(exc)}")
    texts, failures = _extract_pages(pages)
    if not any(t.strip() for t in texts):
        if pages and failures == len(pages):
            return Skipped(path, "PDF could not be parsed: text extraction failed")
        return Skipped(path, "PDF has no extractable text")
    starts, line = [], 1
    for page_text in texts:
        starts.append(line)
        line += page_text.count("\n") + 1
    text = "\n".join(texts)
    return Document(path, candidate.kind, candidate.language, text, "pdf", starts)


def _try_empty_password(reader: object) -> bool:
    try:
        return bool(reader.decrypt(""))  # type: ignore[attr-defined]
    except Exception:
        return False


def _extract_pages(pages: list) -> tuple[list[str], int]:
    texts: list[str] = []
    failures = 0
    for page in pages:
        try:
            raw = page.extract_text() or ""
        except Exception:
            raw, failures = "", failures + 1
        texts.append(normalise_newlines(raw).replace("\x00", "").rstrip())
    return texts, failures
