"""The values passed between ingest, the chunkers and the retriever.

The bottom of the document pipeline: ``Candidate`` and ``Skipped`` (what discovery finds),
``Document`` (what a reader makes of a file), ``Chunk`` (what the chunkers cut from a document).
Everything in ``ingest``, ``readers/``, ``chunkers/`` and ``chunking`` imports these from here, so
no module of the pipeline needs another one above it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TokenCounter = Callable[[list[str]], list[int]]
"""Batch of strings -> token count of each."""

SECTION_SEPARATOR = " > "


@dataclass(frozen=True)
class Candidate:
    """A file found by :func:`compsearch.ingest.discover`; not read yet."""

    path: Path
    kind: str  # "text" | "markdown" | "rst" | "html" | "code" | "pdf" | "auto" (decided by content)
    language: str | None  # for code: "python", "javascript", ...; else None
    compressed: bool = False  # a gzip file: its text is the decompressed content


@dataclass(frozen=True)
class Skipped:
    """A path that was looked at and rejected, with a short reason."""

    path: Path
    reason: str


@dataclass
class Document:
    """Decoded or extracted text of one file."""

    path: Path
    kind: str
    language: str | None
    text: str  # newlines normalised to "\n"
    encoding: str  # "utf-8", "cp1252", ..., or "pdf"
    page_starts: list[int] | None = None  # PDF only: 1-based first line of each page


@dataclass(frozen=True)
class Chunk:
    """A span of a document, ready to embed and cite."""

    text: str
    start_line: int  # 1-based, inclusive
    end_line: int  # inclusive
    section: str | None
    metadata: dict = field(default_factory=dict)

    @property
    def embed_text(self) -> str:
        """The text to encode: the section path on its own line, then the text.

        When the text already starts with the section's own heading (e.g.
        ``## From source`` for ``Installation > From source``, or
        ``def search(...)`` for ``class Retriever > def search``) only the
        parent path is prefixed, so the heading is not repeated.
        """
        if not self.section:
            return self.text
        parts = self.section.split(SECTION_SEPARATOR)
        if _starts_with_label(self.text, parts[-1]):
            parts = parts[:-1]
        if not parts:
            return self.text
        return SECTION_SEPARATOR.join(parts) + "\n" + self.text


_ADORNMENT_ONLY = re.compile(r"^[!-/:-@\[-`{-~]+$")


def _starts_with_label(text: str, label: str) -> bool:
    """Whether the first real line of ``text`` is the heading/definition ``label``."""
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped or (_ADORNMENT_ONLY.match(stripped) and "#" not in stripped):
            continue  # blank lines and rst overlines
        first = stripped.lstrip("#").strip()
        if not first.startswith(label):
            return False
        rest = first[len(label) :]
        return not rest or not (rest[0].isalnum() or rest[0] == "_")
    return False
