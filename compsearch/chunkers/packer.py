"""Packing blocks into chunks under a token budget, and checking the result.

Token counting: every line of the document is counted in *one* batched call to the supplied
counter (plus ``""`` and ``"\\n"`` to learn the counter's fixed overhead, e.g. special tokens,
and the cost of a line break). Chunk sizes are estimated from those numbers (``Costs``); a final
batched call (``verify_spans``) checks the real size of every chunk and splits the rare chunk the
estimate got wrong. The packing rules are described in ``compsearch.chunking``.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..documents import SECTION_SEPARATOR, Chunk, TokenCounter
from .blocks import Block, SectionPath, is_blank, paragraphs


@dataclass(frozen=True)
class Costs:
    """Per-line token counts and cheap span estimates from them."""

    prefix: list[int]  # prefix[i] = tokens of lines[:i]
    overhead: int  # tokens the counter adds to any string (special tokens)
    newline: int  # tokens of a line break

    @classmethod
    def measure(cls, lines: list[str], count_tokens: TokenCounter) -> Costs:
        counts = list(count_tokens(list(lines) + ["", "\n"]))
        overhead = max(0, counts[-2])
        newline = max(0, counts[-1] - overhead)
        prefix = [0]
        for c in counts[:-2]:
            prefix.append(prefix[-1] + max(0, c - overhead))
        return cls(prefix, overhead, newline)

    def span(self, start: int, end: int) -> int:
        """Estimated tokens of ``"\\n".join(lines[start:end])``."""
        body = self.prefix[end] - self.prefix[start]
        return self.overhead + body + max(0, end - start - 1) * self.newline


@dataclass(frozen=True)
class _Span:
    """A chunk to be: lines ``start:end``, or a piece of line ``start``."""

    start: int
    end: int
    piece: str | None = None


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    path: SectionPath
    rank: int | None = None
    heading: bool = False
    piece: str | None = None


class Packer:
    """Greedy packing of blocks into spans (see the module docstring)."""

    def __init__(
        self,
        lines: list[str],
        costs: Costs,
        line_paths: list[SectionPath | None],
        budget: int,
        overlap: int,
        count_tokens: TokenCounter,
    ) -> None:
        self.lines = lines
        self.costs = costs
        self.line_paths = line_paths
        self.budget = budget
        self.overlap = overlap
        self.count_tokens = count_tokens
        self.spans: list[_Span] = []
        self.current: list[_Unit] = []
        self.start = 0
        self.whole = True  # current chunk holds whole sections only

    def pack(self, blocks: list[Block]) -> list[_Span]:
        queue = deque(_Unit(b.start, b.end, b.path, b.rank, b.heading) for b in blocks)
        while queue:
            unit = queue.popleft()
            if unit.piece is None and self.costs.span(unit.start, unit.end) > self.budget:
                queue.extendleft(reversed(self._split(unit)))
                continue
            self._add(unit, queue)
        self._close()
        return self.spans

    # -- decisions ---------------------------------------------------------
    def _add(self, unit: _Unit, queue: deque[_Unit]) -> None:
        if unit.piece is not None:  # a piece of an over-long line stands alone
            self._close()
            self.spans.append(_Span(unit.start, unit.end, unit.piece))
        elif not self.current:
            self._open(unit, overlap=False)
        elif unit.rank is not None and unit.rank <= 2:
            self._add_section_start(unit)
        elif self._fits(unit):
            self.current.append(unit)
        else:
            self._overflow(unit, queue)

    def _fits(self, unit: _Unit) -> bool:
        return self.costs.span(self.start, unit.end) <= self.budget

    def _used(self) -> int:
        return self.costs.span(self.start, self.current[-1].end)

    def _add_section_start(self, unit: _Unit) -> None:
        """Hard boundary, unless the current chunk is a few tiny whole sections."""
        if self.whole and self._used() < self.budget / 4 and self._fits(unit):
            self.current.append(unit)
        else:
            self._close()
            self._open(unit, overlap=False)

    def _overflow(self, unit: _Unit, queue: deque[_Unit]) -> None:
        """The unit does not fit into the current chunk."""
        only_headings = all(u.heading for u in self.current)
        if (only_headings or self._used() < self.budget / 2) and self._splittable(unit):
            # fill the current chunk with the unit's first paragraphs/lines
            queue.extendleft(reversed(self._split(unit)))
            return
        last = self.current[-1]
        if last.heading and len(self.current) > 1:
            if self.costs.span(last.start, unit.end) <= self.budget:
                # move a trailing heading to the next chunk, with its content
                self.current.pop()
                self._close()
                self._open(last, overlap=False)
                self.current.append(unit)
                return
        self._close()
        self._open(unit, overlap=unit.rank is None and not unit.heading)

    def _open(self, unit: _Unit, overlap: bool) -> None:
        self.start = self._overlap_start(unit) if overlap else unit.start
        self.whole = self.start == unit.start and (
            unit.rank is not None or unit.heading or not self.spans
        )
        self.current = [unit]

    def _close(self) -> None:
        if self.current:
            self.spans.append(_Span(self.start, self.current[-1].end))
            self.current = []

    def _overlap_start(self, unit: _Unit) -> int:
        """First line of the next chunk: trailing lines of the previous one."""
        if self.overlap <= 0 or not self.spans or self.spans[-1].piece is not None:
            return unit.start
        prev = self.spans[-1]
        best = unit.start
        for j in range(prev.end - 1, prev.start, -1):
            if is_blank(self.lines[j]):
                continue
            if self.line_paths[j] != unit.path:
                break
            carried = self.costs.span(j, prev.end) - self.costs.overhead
            if carried > self.overlap or self.costs.span(j, unit.end) > self.budget:
                break
            best = j
        return best

    # -- splitting -----------------------------------------------------------
    def _splittable(self, unit: _Unit) -> bool:
        return (
            unit.piece is None
            and sum(1 for i in range(unit.start, unit.end) if not is_blank(self.lines[i])) > 1
        )

    def _split(self, unit: _Unit) -> list[_Unit]:
        """Paragraphs of a unit, else its lines, else pieces of its one line."""
        parts = paragraphs(self.lines, unit.start, unit.end, unit.path)
        if len(parts) == 1:
            parts = [Block(i, i + 1) for i in range(unit.start, unit.end)
                     if not is_blank(self.lines[i])]  # fmt: skip
        if len(parts) > 1:
            units = [_Unit(p.start, p.end, unit.path) for p in parts]
        else:
            line = parts[0].start
            pieces = split_long_line(self.lines[line], self.count_tokens, self.budget)
            units = [_Unit(line, line + 1, unit.path, piece=p) for p in pieces]
        first = units[0]
        units[0] = _Unit(first.start, first.end, first.path, unit.rank, unit.heading, first.piece)
        return units


def split_long_line(line: str, count_tokens: TokenCounter, budget: int) -> list[str]:
    """Split one line into pieces of at most ``budget`` tokens.

    Cuts prefer whitespace (the whitespace stays at the end of the earlier
    piece), so joining the pieces gives back the line; only whitespace-only
    pieces (e.g. a trailing run of spaces) are dropped.  A piece is at least
    one character long even if that character alone is over budget.
    """
    pieces: list[str] = []
    pos, last = 0, len(line.rstrip())  # line[pos:] holds more than whitespace while pos < last
    first = max(64, budget * 8)  # the first probe of _longest_fitting_prefix
    while pos < last:
        # a window, not line[pos:]: copying the rest for every piece was quadratic (a 50 MB
        # line ran for over ten minutes); its length is one of the search's own probes, so
        # the cuts are those the whole rest would give
        width = first * 64
        while True:
            window = line[pos : pos + width]
            n = _longest_fitting_prefix(window, count_tokens, budget)
            if n < len(window) or pos + width >= len(line):
                break
            width *= 4
        cut = n
        if n < len(window) and not window[n].isspace():
            space = max(window.rfind(" ", 0, n), window.rfind("\t", 0, n))
            if space >= n // 2:
                cut = space + 1
        pieces.append(window[:cut])
        pos += cut
    return [p for p in pieces if p.strip()] or [line]


def _longest_fitting_prefix(text: str, count_tokens: TokenCounter, budget: int) -> int:
    """Largest n with count(text[:n]) <= budget (at least 1), by batched search."""
    lo, hi = 0, None  # text[:lo] fits; text[:hi] does not
    probe = min(len(text), max(64, budget * 8))
    while hi is None:  # gallop until a prefix is over budget or the text ends
        if count_tokens([text[:probe]])[0] > budget:
            hi = probe
        elif probe == len(text):
            return probe
        else:
            lo, probe = probe, min(len(text), probe * 4)
    while hi - lo > 1:
        step = max(1, (hi - lo) // 9)
        probes = list(range(lo + step, hi, step))[:8]
        counts = count_tokens([text[:p] for p in probes])
        for p, c in zip(probes, counts):
            if c <= budget:
                lo = p
            else:
                hi = p
                break
    return max(lo, 1)


# --------------------------------------------------------------------------
# Verification and output
# --------------------------------------------------------------------------


def verify_spans(
    spans: list[_Span],
    lines: list[str],
    costs: Costs,
    budget: int,
    count_tokens: TokenCounter,
) -> list[_Span]:
    """Re-count every chunk for real; halve (recursively) those over budget."""
    counts = count_tokens([_span_text(span, lines) for span in spans])
    verified: list[_Span] = []
    for span, count in zip(spans, counts):
        if count <= budget or span.piece is not None:
            verified.append(span)
        else:
            halves = _halve(span, lines, costs, count_tokens, budget)
            verified += verify_spans(halves, lines, costs, budget, count_tokens)
    return verified


def _halve(
    span: _Span, lines: list[str], costs: Costs, count_tokens: TokenCounter, budget: int
) -> list[_Span]:
    content = [i for i in range(span.start, span.end) if not is_blank(lines[i])]
    if len(content) <= 1:
        line = content[0] if content else span.start
        pieces = split_long_line(lines[line], count_tokens, budget)
        return [_Span(line, line + 1, p) for p in pieces]
    half = (costs.prefix[span.start] + costs.prefix[span.end]) / 2
    cut = next((i for i in content[1:] if costs.prefix[i] >= half), content[-1])
    left_end = max(i for i in content if i < cut) + 1
    return [_Span(span.start, left_end), _Span(cut, span.end)]


def _span_text(span: _Span, lines: list[str]) -> str:
    return span.piece if span.piece is not None else "\n".join(lines[span.start : span.end])


def _section(paths: Iterable[SectionPath | None]) -> str | None:
    """Common prefix of the section paths of a chunk's lines.

    Leading lines outside any section (a preamble before the first heading,
    imports before the first definition) do not dilute it: a tiny preamble
    merged into the following section gets that section's name.
    """
    common: SectionPath | None = None
    for path in paths:
        if path is None or (not path and common is None):
            continue
        if common is None:
            common = path
            continue
        k = 0
        while k < min(len(common), len(path)) and common[k] == path[k]:
            k += 1
        common = common[:k]
    return SECTION_SEPARATOR.join(common) if common else None


def to_chunk(
    span: _Span,
    lines: list[str],
    line_paths: list[SectionPath | None],
    page_starts: Sequence[int] | None,
) -> Chunk:
    metadata: dict = {}
    if page_starts:
        first = bisect.bisect_right(page_starts, span.start + 1)
        last = bisect.bisect_right(page_starts, span.end)
        metadata["pages"] = list(range(max(first, 1), max(last, 1) + 1))
    section = _section(line_paths[span.start : span.end])
    return Chunk(_span_text(span, lines), span.start + 1, span.end, section, metadata)
