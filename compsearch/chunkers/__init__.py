"""Per-format chunkers: each turns a document's lines into structural blocks; ``packer`` packs the
blocks of any format into token-bounded chunks.

A new file format gets its own module here with a ``*_blocks(lines) -> list[Block]`` function and
one line in ``find_blocks`` below (and, for a new file extension, one entry in ``ingest``).
``compsearch.chunking`` is the public entry point; nothing here is public API.
"""

from __future__ import annotations

from collections.abc import Sequence

from .blocks import Block, trim
from .code import code_blocks
from .markdown import markdown_blocks
from .python import python_blocks
from .rst import rst_blocks
from .text import text_blocks


def find_blocks(
    lines: list[str], kind: str, language: str | None, page_starts: Sequence[int] | None
) -> list[Block]:
    """The blocks of a document of ``kind`` (and ``language`` for code), blank edges trimmed."""
    if kind in ("markdown", "html"):
        blocks = markdown_blocks(lines)
    elif kind == "rst":
        blocks = rst_blocks(lines)
    elif kind == "code" and language == "python":
        blocks = python_blocks(lines)
        if blocks is None:
            blocks = code_blocks(lines, "python")
    elif kind == "code":
        blocks = code_blocks(lines, language)
    else:
        blocks = text_blocks(lines, page_starts)
    trimmed = (trim(block, lines) for block in blocks)
    return [block for block in trimmed if block is not None]
