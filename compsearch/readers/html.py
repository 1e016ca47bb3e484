"""The visible text of an HTML page.

HTML is reduced to its visible text *without moving it between lines*: the
extracted text has exactly as many lines as the source and every fragment sits
on the line where it occurs, so line spans computed on the text are valid
citations into the original file.  Headings become Markdown ``#`` lines so the
chunker can treat HTML like Markdown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

from .decode import normalise_newlines


_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "svg"})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "br", "caption",
        "dd", "details", "dialog", "div", "dl", "dt", "fieldset", "figcaption",
        "figure", "footer", "form", "header", "hr", "html", "li", "main", "nav",
        "ol", "option", "p", "pre", "section", "summary", "table", "tbody",
        "td", "tfoot", "th", "thead", "title", "tr", "ul",
    }
)  # fmt: skip
_SPACES = re.compile(r"\s+")


@dataclass
class _Fragment:
    text: str
    heading: int = 0  # heading level, 0 for ordinary text
    raw: bool = False  # inside <pre>: keep whitespace


class _TextExtractor(HTMLParser):
    """Collects visible text fragments keyed by their source line."""

    def __init__(self, line_count: int) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[list[_Fragment]] = [[] for _ in range(line_count)]
        self.skip_depth = 0
        self.in_head = False
        self.in_title = False
        self.pre_depth = 0
        self.heading: tuple[int, int, list[str]] | None = None  # level, line, parts

    # -- tag events ------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth += 1
        elif tag == "head":
            self.in_head = True
        elif tag == "title":
            self.in_title = True
        elif tag == "pre":
            self.pre_depth += 1
        if tag in _HEADINGS and self.skip_depth == 0:
            self._finish_heading()
            self.heading = (_HEADINGS[tag], self.getpos()[0], [])
        elif tag in _BLOCK_TAGS:
            self._separate()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "head":
            self.in_head = False
        elif tag == "title":
            self.in_title = False
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        if tag in _HEADINGS:
            self._finish_heading()
        elif tag in _BLOCK_TAGS:
            self._separate()

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag in _BLOCK_TAGS:  # <br/>, <hr/>
            self._separate()

    # -- text events -----------------------------------------------------
    def handle_data(self, data: str) -> None:
        if self.skip_depth or (self.in_head and not self.in_title):
            return
        if self.heading is not None:
            self.heading[2].append(data)
            return
        line = self.getpos()[0]
        for offset, piece in enumerate(data.split("\n")):
            if self.pre_depth:
                self._add(line + offset, _Fragment(piece, raw=True))
            elif piece:
                self._add(line + offset, _Fragment(_SPACES.sub(" ", piece)))

    def close(self) -> None:
        super().close()
        self._finish_heading()

    # -- helpers ---------------------------------------------------------
    def _add(self, line: int, fragment: _Fragment) -> None:
        if 1 <= line <= len(self.lines):
            self.lines[line - 1].append(fragment)

    def _separate(self) -> None:
        """Block boundary: keep words on the same source line apart."""
        if self.heading is not None:
            self.heading[2].append(" ")
        else:
            self._add(self.getpos()[0], _Fragment(" "))

    def _finish_heading(self) -> None:
        if self.heading is None:
            return
        level, line, parts = self.heading
        self.heading = None
        title = _SPACES.sub(" ", "".join(parts)).strip()
        if title:
            self._add(line, _Fragment(title, heading=level))
            self._add(line, _Fragment(" "))

    def render(self) -> list[str]:
        return [_render_line(fragments) for fragments in self.lines]


def _render_line(fragments: list[_Fragment]) -> str:
    visible = [f for f in fragments if f.text.strip()]
    if len(visible) == 1 and visible[0].heading:
        return "#" * visible[0].heading + " " + visible[0].text
    if any(f.raw for f in fragments):
        return "".join(f.text for f in fragments).rstrip()
    return _SPACES.sub(" ", "".join(f.text for f in fragments)).strip()


def html_to_text(source: str) -> str:
    """Visible text of an HTML page, each fragment on its source line.

    The result has exactly as many lines as ``source``.  Text inside
    script/style/noscript/template/svg and inside ``<head>`` (except
    ``<title>``) is dropped.  A heading alone on its line becomes a Markdown
    heading (``## Title``); several blocks on one source line are joined with
    a space.
    """
    source = normalise_newlines(source)
    extractor = _TextExtractor(source.count("\n") + 1)
    try:
        extractor.feed(source)
        extractor.close()
    except Exception:  # html.parser is lenient; be safe anyway
        pass
    return "\n".join(extractor.render())
