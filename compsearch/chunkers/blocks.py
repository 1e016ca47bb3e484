"""Blocks: ranges of whole lines tagged with their section path, the chunkers' common output.

Every per-format chunker turns a document's lines into blocks; the packer then packs blocks into
token-bounded chunks. Helpers shared by several formats (paragraphs, the heading stack, ranks)
live here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


SectionPath = tuple[str, ...]
"""Titles from the outermost section down to the innermost."""


@dataclass(frozen=True)
class Block:
    """Lines ``start:end`` (0-based, end exclusive) belonging to ``path``."""

    start: int
    end: int
    path: SectionPath = ()
    rank: int | None = None  # rank of the section this block starts (1 = outermost)
    heading: bool = False  # a bare heading line: should not end a chunk


def is_blank(line: str) -> bool:
    return not line.strip()


def trim(block: Block, lines: list[str]) -> Block | None:
    """Drop leading/trailing blank lines; None when nothing is left."""
    start, end = block.start, block.end
    while start < end and is_blank(lines[start]):
        start += 1
    while end > start and is_blank(lines[end - 1]):
        end -= 1
    if start >= end:
        return None
    if (start, end) == (block.start, block.end):
        return block
    return Block(start, end, block.path, block.rank, block.heading)


def paragraphs(
    lines: list[str], lo: int, hi: int, path: SectionPath, breaks: Iterable[int] = ()
) -> list[Block]:
    """Blank-line separated runs of lines within ``lo:hi``."""
    forced = set(breaks)
    blocks: list[Block] = []
    start: int | None = None
    for i in range(lo, hi):
        if start is not None and (i in forced or is_blank(lines[i])):
            blocks.append(Block(start, i, path))
            start = None
        if start is None and not is_blank(lines[i]):
            start = i
    if start is not None:
        blocks.append(Block(start, hi, path))
    return blocks


def paths_by_line(blocks: list[Block], n: int) -> list[SectionPath | None]:
    paths: list[SectionPath | None] = [None] * n
    for block in blocks:
        for i in range(block.start, block.end):
            paths[i] = block.path
    return paths


class SectionStack:
    """Tracks the heading path while scanning a document."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, str]] = []

    def push(self, level: int, title: str) -> None:
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, title))

    @property
    def path(self) -> SectionPath:
        return tuple(title for _, title in self.stack)


def rank_levels(blocks: list[Block]) -> list[Block]:
    """Replace raw heading levels by their rank among the levels used."""
    levels = sorted({b.rank for b in blocks if b.rank is not None})
    ranks = {level: i + 1 for i, level in enumerate(levels)}
    return [
        b if b.rank is None else Block(b.start, b.end, b.path, ranks[b.rank], b.heading)
        for b in blocks
    ]


def gap(lines: list[str], lo: int, hi: int, path: SectionPath, rank: int | None) -> list[Block]:
    """Paragraphs between definitions.

    After a definition (``rank`` given) the first one starts a new anonymous
    section, so module- or class-level code is not glued to the end of the
    definition before it.
    """
    blocks = paragraphs(lines, lo, hi, path)
    if blocks and rank is not None:
        blocks[0] = Block(blocks[0].start, blocks[0].end, path, rank)
    return blocks
