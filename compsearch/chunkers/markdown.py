"""Markdown (and HTML, which ingest renders as Markdown headings): ATX and setext headings, fenced
code blocks kept whole, list items, blank-line separated paragraphs, YAML front matter."""

from __future__ import annotations

import re

from .blocks import Block, SectionStack, is_blank, rank_levels


_ATX_OPEN = re.compile(r" {0,3}(#{1,6})(?:[ \t]|$)")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")


def _atx_heading(line: str) -> tuple[int, str] | None:
    """``(level, title)`` of an ATX heading line such as ``## Title ##``."""
    match = _ATX_OPEN.match(line)
    if match is None:
        return None
    title = line[match.end() :].strip()
    without_closing = title.rstrip("#")
    if without_closing != title and (not without_closing or without_closing[-1] in " \t"):
        title = without_closing.strip()
    return (len(match.group(1)), title) if title else None


def _closing_fence(lines: list[str], start: int, fence: str) -> int:
    """Index just past the fence closing the one opened at ``start``."""
    closing = re.compile(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$")
    for j in range(start + 1, len(lines)):
        if closing.match(lines[j]):
            return j + 1
    return len(lines)


def _front_matter_end(lines: list[str]) -> int:
    if lines and lines[0].strip() == "---":
        for j in range(1, len(lines)):
            if lines[j].strip() in ("---", "..."):
                return j + 1
    return 0


def markdown_blocks(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    sections = SectionStack()
    para: int | None = None

    def flush(end: int) -> None:
        nonlocal para
        if para is not None and para < end:
            blocks.append(Block(para, end, sections.path))
        para = None

    i = _front_matter_end(lines)
    if i:
        blocks.append(Block(0, i))
    while i < len(lines):
        line = lines[i]
        atx = _atx_heading(line)
        fence = _FENCE.match(line)
        if is_blank(line):
            flush(i)
        elif fence:
            flush(i)
            end = _closing_fence(lines, i, fence.group(1))
            blocks.append(Block(i, end, sections.path))
            i = end
            continue
        elif atx:
            flush(i)
            level, title = atx
            sections.push(level, title)
            blocks.append(Block(i, i + 1, sections.path, level, heading=True))
        elif _SETEXT.match(line) and para is not None:
            flush(i - 1)
            level = 1 if line.strip()[0] == "=" else 2
            sections.push(level, lines[i - 1].strip())
            blocks.append(Block(i - 1, i + 1, sections.path, level, heading=True))
        else:
            if _LIST_ITEM.match(line):
                flush(i)
            if para is None:
                para = i
        i += 1
    flush(len(lines))
    return rank_levels(blocks)
