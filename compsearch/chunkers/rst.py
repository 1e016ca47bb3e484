"""reStructuredText: underlined (optionally overlined) section titles ranked by first use of
each adornment style, paragraphs, and indented blocks (``::`` literal blocks, directive bodies)
glued to the paragraph before them."""

from __future__ import annotations

import re

from .blocks import Block, SectionStack, is_blank, rank_levels


_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1+[ \t]*$")


def _adornment(line: str) -> str | None:
    match = _ADORNMENT.match(line)
    return match.group(1) if match else None


def _rst_title(lines: list[str], i: int) -> tuple[int, str, tuple[str, bool]] | None:
    """If a section title starts at line i: (lines used, title, style)."""
    n = len(lines)
    char = _adornment(lines[i])
    if char and i + 2 < n and _adornment(lines[i + 2]) == char:
        title = lines[i + 1].strip()
        if title and len(lines[i].rstrip()) >= len(title):
            return 3, title, (char, True)
    if char or lines[i][:1].isspace() or i + 1 >= n:
        return None
    under = _adornment(lines[i + 1])
    title = lines[i].strip()
    if under and len(lines[i + 1].rstrip()) >= len(lines[i].rstrip()):
        return 2, title, (under, False)
    return None


def rst_blocks(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    sections = SectionStack()
    styles: list[tuple[str, bool]] = []
    para: int | None = None

    def flush(end: int) -> None:
        nonlocal para
        if para is not None and para < end:
            blocks.append(Block(para, end, sections.path))
        para = None

    i = 0
    while i < len(lines):
        if is_blank(lines[i]):
            flush(i)
            i += 1
            continue
        title = _rst_title(lines, i) if para is None else None
        if title is None:
            if para is None:
                para = i
            i += 1
            continue
        used, text, style = title
        if style not in styles:
            styles.append(style)
        level = styles.index(style) + 1
        sections.push(level, text)
        blocks.append(Block(i, i + used, sections.path, level, heading=True))
        i += used
    flush(len(lines))
    return rank_levels(_glue_indented(blocks, lines))


def _glue_indented(blocks: list[Block], lines: list[str]) -> list[Block]:
    """Attach indented blocks (literal blocks, directive bodies) to the previous block."""
    out: list[Block] = []
    for block in blocks:
        prev = out[-1] if out else None
        indented = lines[block.start][:1].isspace()
        if prev is not None and indented and not prev.heading and prev.path == block.path:
            out[-1] = Block(prev.start, block.end, prev.path, prev.rank, prev.heading)
        else:
            out.append(block)
    return out
