"""Structure-aware chunking of documents into token-bounded, cited spans.

Chunking runs in two stages:

1. The text is split into structural *blocks*, each a range of whole lines
   tagged with the section path it belongs to:

   * markdown / html: ATX (``#``) and setext headings, fenced code blocks
     (kept whole), list items, blank-line separated paragraphs, YAML front
     matter;
   * rst: underlined (optionally overlined) section titles, paragraphs, and
     indented blocks (``::`` literal blocks, directive bodies) glued to the
     paragraph before them;
   * python: top-level and class-level ``def``/``class`` spans from the
     ``ast`` module (decorators and the comment lines right above included);
   * other code: a regex heuristic for column-0 definitions (``func``,
     ``fn``, ``function``, ``class``, C-style ``type name(...)``, toml/ini
     ``[sections]``, yaml top-level keys, make targets, ...);
   * text / pdf: paragraphs; a PDF page start always starts a new block.

2. Blocks are packed greedily into chunks of at most ``max_tokens`` tokens.
   Sections of rank 1 and 2 (the two outermost heading levels used in the
   document; top-level definitions and class members in code) are hard
   boundaries, except that a chunk holding only whole sections and less
   than a quarter of the budget is allowed to absorb the next section, so
   tiny sections do not become tiny chunks.  Deeper headings are soft: the
   packer may continue across them.  A block over the budget is split at
   its blank lines, then into lines; a line over the budget is split by
   characters (preferably at whitespace) into standalone chunks.  When a
   chunk is closed because the budget ran out, the next one starts with the
   trailing lines of the previous chunk (same section only) worth at most
   ``overlap_tokens``.  A heading is never left dangling at the end of a
   chunk when it can move into the next one.

Token counting: every line of the document is counted in *one* batched call
to the supplied counter (plus ``""`` and ``"\\n"`` to learn the counter's
fixed overhead, e.g. special tokens, and the cost of a line break).  Chunk
sizes are estimated from those numbers; a final batched call verifies the
real size of every chunk and splits the rare chunk the estimate got wrong.

Each chunk's ``text`` is exactly lines ``start_line..end_line`` of the
document joined by ``"\\n"`` (a character-split piece of one over-long line
is the exception), so spans are faithful citations.  Every non-blank line is
covered by at least one chunk, and no chunk is whitespace-only.
"""

from __future__ import annotations

import ast
import bisect
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compsearch.ingest import Document

__all__ = [
    "CHUNKER_VERSION",
    "Chunk",
    "ChunkingConfig",
    "SECTION_SEPARATOR",
    "TokenCounter",
    "chunk_document",
    "chunk_text",
]

TokenCounter = Callable[[list[str]], list[int]]
"""Batch of strings -> token count of each."""

SECTION_SEPARATOR = " > "
# Bump when the chunking output for the same input and config changes, so
# indexes can tell that stored chunks are stale.
CHUNKER_VERSION = 1

_MIN_MAX_TOKENS = 16
_Path = tuple[str, ...]


# --------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkingConfig:
    """Token budget per chunk and overlap between consecutive chunks."""

    max_tokens: int = 256
    overlap_tokens: int = 32

    def __post_init__(self) -> None:
        _check_int("max_tokens", self.max_tokens)
        _check_int("overlap_tokens", self.overlap_tokens)
        if self.max_tokens < _MIN_MAX_TOKENS:
            raise ValueError(
                f"max_tokens must be at least {_MIN_MAX_TOKENS}, got {self.max_tokens}"
            )
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ValueError(
                "overlap_tokens must be >= 0 and smaller than max_tokens "
                f"({self.max_tokens}), got {self.overlap_tokens}"
            )

    def to_dict(self) -> dict[str, int]:
        return {"max_tokens": self.max_tokens, "overlap_tokens": self.overlap_tokens}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChunkingConfig:
        if not isinstance(d, dict):
            raise ValueError(f"chunking config must be a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - {"max_tokens", "overlap_tokens"})
        if unknown:
            raise ValueError(f"unknown chunking option(s): {', '.join(map(str, unknown))}")
        return cls(**d)


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")


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


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------


def chunk_document(
    doc: Document, count_tokens: TokenCounter, config: ChunkingConfig = ChunkingConfig()
) -> list[Chunk]:
    """Chunk a parsed document (see the module docstring)."""
    return _chunk(doc.text, doc.kind, doc.language, doc.page_starts, count_tokens, config)


def chunk_text(
    text: str,
    kind: str,
    count_tokens: TokenCounter,
    config: ChunkingConfig = ChunkingConfig(),
    language: str | None = None,
) -> list[Chunk]:
    """Chunk raw text of the given kind ("markdown", "code", ...).

    ``text`` should use ``"\\n"`` newlines, as produced by the ingest module.
    """
    return _chunk(text, kind, language, None, count_tokens, config)


def _chunk(
    text: str,
    kind: str,
    language: str | None,
    page_starts: Sequence[int] | None,
    count_tokens: TokenCounter,
    config: ChunkingConfig,
) -> list[Chunk]:
    lines = text.split("\n")
    if not any(line.strip() for line in lines):
        return []
    blocks = _find_blocks(lines, kind, language, page_starts)
    costs = _Costs.measure(lines, count_tokens)
    line_paths = _line_paths(blocks, len(lines))
    packer = _Packer(lines, costs, line_paths, config, count_tokens)
    spans = packer.pack(blocks)
    spans = _verify(spans, lines, costs, config, count_tokens)
    return [_to_chunk(span, lines, line_paths, page_starts) for span in spans]


# --------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    """Lines ``start:end`` (0-based, end exclusive) belonging to ``path``."""

    start: int
    end: int
    path: _Path = ()
    rank: int | None = None  # rank of the section this block starts (1 = outermost)
    heading: bool = False  # a bare heading line: should not end a chunk


def _find_blocks(
    lines: list[str], kind: str, language: str | None, page_starts: Sequence[int] | None
) -> list[_Block]:
    if kind in ("markdown", "html"):
        blocks = _markdown_blocks(lines)
    elif kind == "rst":
        blocks = _rst_blocks(lines)
    elif kind == "code" and language == "python":
        blocks = _python_blocks(lines)
        if blocks is None:
            blocks = _code_blocks(lines, "python")
    elif kind == "code":
        blocks = _code_blocks(lines, language)
    else:
        breaks = {s - 1 for s in page_starts or ()}
        blocks = _paragraphs(lines, 0, len(lines), (), breaks)
    trimmed = (_trim(block, lines) for block in blocks)
    return [block for block in trimmed if block is not None]


def _is_blank(line: str) -> bool:
    return not line.strip()


def _trim(block: _Block, lines: list[str]) -> _Block | None:
    """Drop leading/trailing blank lines; None when nothing is left."""
    start, end = block.start, block.end
    while start < end and _is_blank(lines[start]):
        start += 1
    while end > start and _is_blank(lines[end - 1]):
        end -= 1
    if start >= end:
        return None
    if (start, end) == (block.start, block.end):
        return block
    return _Block(start, end, block.path, block.rank, block.heading)


def _paragraphs(
    lines: list[str], lo: int, hi: int, path: _Path, breaks: Iterable[int] = ()
) -> list[_Block]:
    """Blank-line separated runs of lines within ``lo:hi``."""
    forced = set(breaks)
    blocks: list[_Block] = []
    start: int | None = None
    for i in range(lo, hi):
        if start is not None and (i in forced or _is_blank(lines[i])):
            blocks.append(_Block(start, i, path))
            start = None
        if start is None and not _is_blank(lines[i]):
            start = i
    if start is not None:
        blocks.append(_Block(start, hi, path))
    return blocks


def _line_paths(blocks: list[_Block], n: int) -> list[_Path | None]:
    paths: list[_Path | None] = [None] * n
    for block in blocks:
        for i in range(block.start, block.end):
            paths[i] = block.path
    return paths


class _SectionStack:
    """Tracks the heading path while scanning a document."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, str]] = []

    def push(self, level: int, title: str) -> None:
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, title))

    @property
    def path(self) -> _Path:
        return tuple(title for _, title in self.stack)


def _rank_levels(blocks: list[_Block]) -> list[_Block]:
    """Replace raw heading levels by their rank among the levels used."""
    levels = sorted({b.rank for b in blocks if b.rank is not None})
    ranks = {level: i + 1 for i, level in enumerate(levels)}
    return [
        b if b.rank is None else _Block(b.start, b.end, b.path, ranks[b.rank], b.heading)
        for b in blocks
    ]


# -- markdown / html ---------------------------------------------------------

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


def _markdown_blocks(lines: list[str]) -> list[_Block]:
    blocks: list[_Block] = []
    sections = _SectionStack()
    para: int | None = None

    def flush(end: int) -> None:
        nonlocal para
        if para is not None and para < end:
            blocks.append(_Block(para, end, sections.path))
        para = None

    i = _front_matter_end(lines)
    if i:
        blocks.append(_Block(0, i))
    while i < len(lines):
        line = lines[i]
        atx = _atx_heading(line)
        fence = _FENCE.match(line)
        if _is_blank(line):
            flush(i)
        elif fence:
            flush(i)
            end = _closing_fence(lines, i, fence.group(1))
            blocks.append(_Block(i, end, sections.path))
            i = end
            continue
        elif atx:
            flush(i)
            level, title = atx
            sections.push(level, title)
            blocks.append(_Block(i, i + 1, sections.path, level, heading=True))
        elif _SETEXT.match(line) and para is not None:
            flush(i - 1)
            level = 1 if line.strip()[0] == "=" else 2
            sections.push(level, lines[i - 1].strip())
            blocks.append(_Block(i - 1, i + 1, sections.path, level, heading=True))
        else:
            if _LIST_ITEM.match(line):
                flush(i)
            if para is None:
                para = i
        i += 1
    flush(len(lines))
    return _rank_levels(blocks)


# -- reStructuredText ---------------------------------------------------------

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


def _rst_blocks(lines: list[str]) -> list[_Block]:
    blocks: list[_Block] = []
    sections = _SectionStack()
    styles: list[tuple[str, bool]] = []
    para: int | None = None

    def flush(end: int) -> None:
        nonlocal para
        if para is not None and para < end:
            blocks.append(_Block(para, end, sections.path))
        para = None

    i = 0
    while i < len(lines):
        if _is_blank(lines[i]):
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
        blocks.append(_Block(i, i + used, sections.path, level, heading=True))
        i += used
    flush(len(lines))
    return _rank_levels(_glue_indented(blocks, lines))


def _glue_indented(blocks: list[_Block], lines: list[str]) -> list[_Block]:
    """Attach indented blocks (literal blocks, directive bodies) to the previous block."""
    out: list[_Block] = []
    for block in blocks:
        prev = out[-1] if out else None
        indented = lines[block.start][:1].isspace()
        if prev is not None and indented and not prev.heading and prev.path == block.path:
            out[-1] = _Block(prev.start, block.end, prev.path, prev.rank, prev.heading)
        else:
            out.append(block)
    return out


# -- python -------------------------------------------------------------------

_PY_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _python_blocks(lines: list[str]) -> list[_Block] | None:
    source = "\n".join(lines).replace("\r", " ")
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return _python_body(tree.body, lines, 0, len(lines), (), 0)


def _py_label(node: ast.AST) -> str:
    if isinstance(node, ast.ClassDef):
        return f"class {node.name}"
    if isinstance(node, ast.AsyncFunctionDef):
        return f"async def {node.name}"
    return f"def {node.name}"  # type: ignore[attr-defined]


def _with_leading_comments(lines: list[str], start: int, floor: int, prefix: str) -> int:
    """Move ``start`` up over comment lines directly above it."""
    while start - 1 >= floor and lines[start - 1].strip().startswith(prefix):
        start -= 1
    return start


def _gap(lines: list[str], lo: int, hi: int, path: _Path, rank: int | None) -> list[_Block]:
    """Paragraphs between definitions.

    After a definition (``rank`` given) the first one starts a new anonymous
    section, so module- or class-level code is not glued to the end of the
    definition before it.
    """
    blocks = _paragraphs(lines, lo, hi, path)
    if blocks and rank is not None:
        blocks[0] = _Block(blocks[0].start, blocks[0].end, path, rank)
    return blocks


def _python_body(
    body: list[ast.stmt], lines: list[str], lo: int, hi: int, path: _Path, depth: int
) -> list[_Block]:
    """Blocks for the statements of a module (depth 0) or class body (depth 1)."""
    blocks: list[_Block] = []
    cursor = lo
    for node in body:
        if not isinstance(node, _PY_DEFS) or node.end_lineno is None:
            continue
        first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
        if first < cursor:
            continue
        start = _with_leading_comments(lines, first, cursor, "#")
        end = min(node.end_lineno, hi)
        blocks += _gap(lines, cursor, start, path, depth + 1 if cursor > lo else None)
        sub_path = path + (_py_label(node),)
        if isinstance(node, ast.ClassDef) and depth == 0:
            inner = _python_body(node.body, lines, start, end, sub_path, depth + 1)
            if inner:
                head = inner[0]
                inner[0] = _Block(head.start, head.end, head.path, 1)
            blocks += inner
        else:
            blocks.append(_Block(start, end, sub_path, depth + 1))
        cursor = end
    blocks += _gap(lines, cursor, hi, path, depth + 1 if cursor > lo else None)
    return blocks


# -- other code -----------------------------------------------------------------

_GENERIC_DEF = re.compile(
    r"""^(?:
        (?:export\s+)?(?:default\s+)?(?:async\s+)?function\b
      | (?:pub(?:\([^)]*\))?\s+)?(?:(?:async|const|unsafe|extern(?:\s+"[^"]*")?)\s+)*fn\s
      | func\s
      | def\s
      | (?:pub(?:\([^)]*\))?\s+)?(?:impl|trait|mod|union)\b
      | (?:(?:public|private|protected|internal|static|abstract|final|sealed|partial
             |export|default|data|open|case|inline|pub(?:\([^)]*\))?)\s+)*
        (?:class|interface|object|enum|record|struct)\s
      | (?:export\s+)?(?:const|let|var)\s+[\w$]+\s*=\s*(?:async\s+)?
        (?:function\b|\([^)]*\)\s*=>|[\w$]+\s*=>)
      | (?:type|module|namespace)\s+\w
      | sub\s+\w
      | local\s+function\s
    )""",
    re.X,
)
# C-style function definition: "type name(args" at column 0, no ';' after '('.
_C_FUNCTION = re.compile(
    r"^(?!(?:if|for|while|switch|return|else|do|case|typedef|using|goto)\b)"
    r"[A-Za-z_][\w\s*&:<>,\[\]]*?[*&\s]\**[A-Za-z_~][\w:~]*\s*\([^;]*$"
)
_LANGUAGE_DEFS: dict[str, re.Pattern[str]] = {
    "python": re.compile(r"^(?:async\s+def|def|class)\s"),
    "toml": re.compile(r"^\[[^\]]+\]"),
    "ini": re.compile(r"^\[[^\]]+\]"),
    "yaml": re.compile(r"^[A-Za-z_\"'][\w\"' .-]*:(?:\s|$)"),
    "make": re.compile(r"^[\w./%$(){}-][^:=#\t]*:(?!=)"),
    "shell": re.compile(r"^(?:function\s+[\w.-]+|[\w.-]+\s*\(\s*\))"),
    "sql": re.compile(r"^(?:create|alter|drop|insert|update|delete|select|with)\b", re.I),
}
_DEFINITION_SCAN_CHARS = 300
_BRACE_END = re.compile(r"^(?:\}|end\b|\)|\])")
_COMMENT_PREFIXES = ("//", "/*", "*", "#", "--", ";", "@", "[")


def _is_definition(line: str, language: str | None) -> bool:
    if not line or line[0].isspace():
        return False
    line = line[:_DEFINITION_SCAN_CHARS]  # keeps the regexes cheap on huge lines
    pattern = _LANGUAGE_DEFS.get(language or "")
    if pattern is not None:
        return bool(pattern.match(line))
    return bool(_GENERIC_DEF.match(line) or _C_FUNCTION.match(line))


def _code_label(line: str) -> str:
    label = line.strip().rstrip("{").rstrip(":").strip()
    return label if len(label) <= 80 else label[:77] + "..."


def _definition_end(lines: list[str], start: int, limit: int, language: str | None) -> int:
    """Where the definition starting at ``start`` ends (exclusive), at most ``limit``."""
    if language == "python":  # indentation based: next column-0 code line
        for j in range(start + 1, limit):
            line = lines[j]
            if line.strip() and not line[0].isspace() and not line.startswith(("#", "@")):
                return j
        return limit
    if language in _LANGUAGE_DEFS:  # sections run until the next one
        return limit
    for j in range(start + 1, limit):
        if _BRACE_END.match(lines[j]):
            return j + 1
    return limit


def _code_blocks(lines: list[str], language: str | None) -> list[_Block]:
    n = len(lines)
    starts = [i for i in range(n) if _is_definition(lines[i], language)]
    blocks: list[_Block] = []
    cursor = 0
    for k, def_line in enumerate(starts):
        if def_line < cursor:
            continue
        start = _with_leading_comments_any(lines, def_line, cursor)
        limit = starts[k + 1] if k + 1 < len(starts) else n
        limit = _with_leading_comments_any(lines, limit, def_line + 1) if limit < n else n
        end = _definition_end(lines, def_line, limit, language)
        blocks += _gap(lines, cursor, start, (), 1 if cursor else None)
        path = (_code_label(lines[def_line]),)
        blocks.append(_Block(start, end, path, 1))
        cursor = end
    blocks += _gap(lines, cursor, n, (), 1 if cursor else None)
    return blocks


def _with_leading_comments_any(lines: list[str], start: int, floor: int) -> int:
    while start - 1 >= floor and lines[start - 1].strip().startswith(_COMMENT_PREFIXES):
        start -= 1
    return start


# --------------------------------------------------------------------------
# Token costs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Costs:
    """Per-line token counts and cheap span estimates from them."""

    prefix: list[int]  # prefix[i] = tokens of lines[:i]
    overhead: int  # tokens the counter adds to any string (special tokens)
    newline: int  # tokens of a line break

    @classmethod
    def measure(cls, lines: list[str], count_tokens: TokenCounter) -> _Costs:
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


# --------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------


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
    path: _Path
    rank: int | None = None
    heading: bool = False
    piece: str | None = None


class _Packer:
    """Greedy packing of blocks into spans (see the module docstring)."""

    def __init__(
        self,
        lines: list[str],
        costs: _Costs,
        line_paths: list[_Path | None],
        config: ChunkingConfig,
        count_tokens: TokenCounter,
    ) -> None:
        self.lines = lines
        self.costs = costs
        self.line_paths = line_paths
        self.budget = config.max_tokens
        self.overlap = config.overlap_tokens
        self.count_tokens = count_tokens
        self.spans: list[_Span] = []
        self.current: list[_Unit] = []
        self.start = 0
        self.whole = True  # current chunk holds whole sections only

    def pack(self, blocks: list[_Block]) -> list[_Span]:
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
            if _is_blank(self.lines[j]):
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
        return unit.piece is None and sum(
            1 for i in range(unit.start, unit.end) if not _is_blank(self.lines[i])
        ) > 1

    def _split(self, unit: _Unit) -> list[_Unit]:
        """Paragraphs of a unit, else its lines, else pieces of its one line."""
        parts = _paragraphs(self.lines, unit.start, unit.end, unit.path)
        if len(parts) == 1:
            parts = [_Block(i, i + 1) for i in range(unit.start, unit.end)
                     if not _is_blank(self.lines[i])]  # fmt: skip
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
    rest = line
    while rest.strip():
        n = _longest_fitting_prefix(rest, count_tokens, budget)
        cut = n
        if n < len(rest) and not rest[n].isspace():
            space = max(rest.rfind(" ", 0, n), rest.rfind("\t", 0, n))
            if space >= n // 2:
                cut = space + 1
        pieces.append(rest[:cut])
        rest = rest[cut:]
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


def _verify(
    spans: list[_Span],
    lines: list[str],
    costs: _Costs,
    config: ChunkingConfig,
    count_tokens: TokenCounter,
) -> list[_Span]:
    """Re-count every chunk for real; halve (recursively) those over budget."""
    budget = config.max_tokens
    counts = count_tokens([_span_text(span, lines) for span in spans])
    verified: list[_Span] = []
    for span, count in zip(spans, counts):
        if count <= budget or span.piece is not None:
            verified.append(span)
        else:
            halves = _halve(span, lines, costs, count_tokens, budget)
            verified += _verify(halves, lines, costs, config, count_tokens)
    return verified


def _halve(
    span: _Span, lines: list[str], costs: _Costs, count_tokens: TokenCounter, budget: int
) -> list[_Span]:
    content = [i for i in range(span.start, span.end) if not _is_blank(lines[i])]
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


def _section(paths: Iterable[_Path | None]) -> str | None:
    """Common prefix of the section paths of a chunk's lines.

    Leading lines outside any section (a preamble before the first heading,
    imports before the first definition) do not dilute it: a tiny preamble
    merged into the following section gets that section's name.
    """
    common: _Path | None = None
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


def _to_chunk(
    span: _Span,
    lines: list[str],
    line_paths: list[_Path | None],
    page_starts: Sequence[int] | None,
) -> Chunk:
    metadata: dict = {}
    if page_starts:
        first = bisect.bisect_right(page_starts, span.start + 1)
        last = bisect.bisect_right(page_starts, span.end)
        metadata["pages"] = list(range(max(first, 1), max(last, 1) + 1))
    section = _section(line_paths[span.start : span.end])
    return Chunk(_span_text(span, lines), span.start + 1, span.end, section, metadata)
