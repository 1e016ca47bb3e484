"""Plain text and PDF text: blank-line separated paragraphs; a PDF page start always starts a new
block, so no block straddles a page break and chunks can cite their pages."""

from __future__ import annotations

from collections.abc import Sequence

from .blocks import Block, paragraphs


def text_blocks(lines: list[str], page_starts: Sequence[int] | None = None) -> list[Block]:
    breaks = {s - 1 for s in page_starts or ()}
    return paragraphs(lines, 0, len(lines), (), breaks)
