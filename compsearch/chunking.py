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

Stage 1 lives in ``compsearch.chunkers`` (one module per format), stage 2 in
``compsearch.chunkers.packer``, which also explains how tokens are counted
(one batched call per document, then one to verify every chunk).  This
module is the public entry point and keeps the names callers import.

Each chunk's ``text`` is exactly lines ``start_line..end_line`` of the
document joined by ``"\\n"`` (a character-split piece of one over-long line
is the exception), so spans are faithful citations.  Every non-blank line is
covered by at least one chunk, and no chunk is whitespace-only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .chunkers import find_blocks
from .chunkers.blocks import paths_by_line
from .chunkers.packer import Costs, Packer, split_long_line, to_chunk, verify_spans
from .errors import CompsearchError
from .documents import SECTION_SEPARATOR, Chunk, Document, TokenCounter

__all__ = [
    "CHUNKER_VERSION",
    "Chunk",
    "ChunkingConfig",
    "SECTION_SEPARATOR",
    "TokenCounter",
    "chunk_document",
    "chunk_text",
    "split_long_line",
]

# Bump when the chunking output for the same input and config changes (any module of
# ``compsearch.chunkers``): the version is recorded in an index's manifest, and an index built by
# another version re-chunks and re-encodes every file on its next update.
CHUNKER_VERSION = 1

_MIN_MAX_TOKENS = 16


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
    blocks = find_blocks(lines, kind, language, page_starts)
    costs = Costs.measure(lines, count_tokens)
    line_paths = paths_by_line(blocks, len(lines))
    packer = Packer(
        lines, costs, line_paths, config.max_tokens, config.overlap_tokens, count_tokens
    )
    spans = packer.pack(blocks)
    spans = verify_spans(spans, lines, costs, config.max_tokens, count_tokens)
    return [to_chunk(span, lines, line_paths, page_starts) for span in spans]


def max_length(encoder) -> int:
    """The encoder's token limit (compsearch's ``config.max_length`` or a foreign ``max_length``)."""
    config = getattr(encoder, "config", None)
    return int(getattr(config, "max_length", None) or getattr(encoder, "max_length", 512))


def check_chunk_budget(chunking: ChunkingConfig, encoder) -> None:
    """A chunk budget above the encoder's ``max_length`` would have every long chunk cut when
    encoded (its tail unsearchable): refuse it."""
    limit = max_length(encoder)
    if chunking.max_tokens > limit:
        raise CompsearchError(
            f"a chunk budget of {chunking.max_tokens} tokens is above the encoder's "
            f"max_length of {limit}: use --chunk-tokens {limit} or less"
        )
