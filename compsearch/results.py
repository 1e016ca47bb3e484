"""What a search returns: ``SearchResult``, one cited hit (text, score, path and line span)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SearchResult:
    """One hit: the chunk text, its score, and where it came from (path and line span)."""

    id: int
    score: float
    text: str
    source: str
    start_line: int | None = None
    end_line: int | None = None
    section: str | None = None
    metadata: dict = field(default_factory=dict)
    doc_id: str | None = None  # the caller's string id (``add(..., ids=...)``), if any

    @property
    def span(self) -> tuple[int, int] | None:
        return None if self.start_line is None else (self.start_line, self.end_line)

    def to_dict(self) -> dict:
        return asdict(self)


def to_result(
    rec, score: float, extra: dict | None = None, doc_id: str | None = None
) -> SearchResult:
    return SearchResult(
        id=rec.id,
        score=score,
        text=rec.text,
        source=rec.source,
        start_line=rec.start_line,
        end_line=rec.end_line,
        section=rec.section,
        metadata=dict(rec.metadata, **extra) if extra else rec.metadata,
        doc_id=doc_id,
    )
