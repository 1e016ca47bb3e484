"""Tests for compsearch.chunking: structure, budgets, coverage, overlap, spans."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import pytest

from compsearch.chunking import (
    Chunk,
    ChunkingConfig,
    chunk_document,
    chunk_text,
    split_long_line,
)
from compsearch.ingest import Candidate, Document, parse


def words(texts: list[str]) -> list[int]:
    """Whitespace word counter used throughout the tests."""
    return [len(t.split()) for t in texts]


class CountingCounter:
    """Word counter that records how often and with how much it is called."""

    def __init__(self, overhead: int = 0) -> None:
        self.calls: list[int] = []
        self.overhead = overhead

    def __call__(self, texts: list[str]) -> list[int]:
        self.calls.append(len(texts))
        return [len(t.split()) + self.overhead for t in texts]


def para(rng: random.Random, n_words: int) -> str:
    vocab = ["alpha", "beta", "gamma", "delta", "omega", "index", "vector", "search", "x"]
    return " ".join(rng.choice(vocab) for _ in range(n_words))


def is_char_split(chunk: Chunk, lines: list[str]) -> bool:
    return chunk.start_line == chunk.end_line and chunk.text != lines[chunk.start_line - 1]


def check_invariants(chunks: list[Chunk], text: str, config: ChunkingConfig, counter=words):
    """Faithful spans, budget, coverage, no whitespace-only chunks."""
    lines = text.split("\n")
    covered: set[int] = set()
    counts = counter([c.text for c in chunks])
    for chunk, count in zip(chunks, counts):
        assert 1 <= chunk.start_line <= chunk.end_line <= len(lines)
        assert chunk.text.strip(), "whitespace-only chunk"
        if is_char_split(chunk, lines):
            assert chunk.text in lines[chunk.start_line - 1]
        else:
            assert chunk.text == "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
            assert chunk.text.split("\n")[0].strip(), "chunk starts with a blank line"
            assert chunk.text.split("\n")[-1].strip(), "chunk ends with a blank line"
        indivisible = len(chunk.text.split()) <= 1
        assert count <= config.max_tokens or indivisible, (count, chunk)
        covered.update(range(chunk.start_line, chunk.end_line + 1))
    for number, line in enumerate(lines, 1):
        if line.strip():
            assert number in covered, f"line {number} not covered: {line!r}"


def rebuild_long_line(chunks: list[Chunk], line_number: int) -> str:
    return "".join(c.text for c in chunks if c.start_line == c.end_line == line_number)


# --------------------------------------------------------------------------
# config and Chunk
# --------------------------------------------------------------------------


def test_config_defaults_and_json_round_trip():
    config = ChunkingConfig(max_tokens=128, overlap_tokens=16)
    payload = json.dumps(config.to_dict())
    assert ChunkingConfig.from_dict(json.loads(payload)) == config
    assert ChunkingConfig.from_dict({}) == ChunkingConfig()
    assert ChunkingConfig().to_dict() == {"max_tokens": 256, "overlap_tokens": 32}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_tokens": 8}, "max_tokens must be at least 16"),
        ({"max_tokens": 64, "overlap_tokens": 64}, "overlap_tokens must be >= 0"),
        ({"overlap_tokens": -1}, "overlap_tokens must be >= 0"),
        ({"max_tokens": "256"}, "max_tokens must be an integer"),
        ({"max_tokens": 256.0}, "max_tokens must be an integer"),
        ({"overlap_tokens": True}, "overlap_tokens must be an integer"),
        ({"max_tokens": 64, "stride": 3}, "unknown chunking option(s): stride"),
    ],
)
def test_config_validation(data, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ChunkingConfig.from_dict(data)


def test_config_validates_on_construction():
    with pytest.raises(ValueError):
        ChunkingConfig(max_tokens=10)


def test_embed_text():
    plain = Chunk("some text", 1, 1, None, {})
    assert plain.embed_text == "some text"
    nested = Chunk("body line", 3, 3, "Install > From source", {})
    assert nested.embed_text == "Install > From source\nbody line"
    starts_with_heading = Chunk("## From source\nbody", 2, 3, "Install > From source", {})
    assert starts_with_heading.embed_text == "Install\n## From source\nbody"
    top = Chunk("# Install\nbody", 1, 2, "Install", {})
    assert top.embed_text == "# Install\nbody"
    method = Chunk("    def search(self):\n        pass", 5, 6, "class R > def search", {})
    assert method.embed_text == "class R\n    def search(self):\n        pass"
    not_a_prefix = Chunk("def searcher():", 1, 1, "def search", {})
    assert not_a_prefix.embed_text == "def search\ndef searcher():"


# --------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------

MARKDOWN = """\
# Guide

Welcome to the guide. {intro}

## Installation

{install}

### From source

{source}

```bash
make build

make install
```

## Usage

- first item {item}
- second item
  continued here

Usage text. {usage}
"""


def markdown_doc(rng: random.Random) -> str:
    return MARKDOWN.format(
        intro=para(rng, 5),
        install=para(rng, 30),
        source=para(rng, 20),
        item=para(rng, 5),
        usage=para(rng, 40),
    )


def test_markdown_sections_and_hard_boundaries():
    text = markdown_doc(random.Random(1))
    config = ChunkingConfig(max_tokens=64, overlap_tokens=8)
    chunks = chunk_text(text, "markdown", words, config)
    check_invariants(chunks, text, config)
    sections = [c.section for c in chunks]
    # the tiny "Guide" intro merges into the next section; everything else is split
    # at the level-2 headings, and no chunk mixes Installation and Usage
    assert "Guide > Usage" in sections
    assert all(s is not None and s.startswith("Guide") for s in sections)
    for chunk in chunks:
        assert not ("## Installation" in chunk.text and "## Usage" in chunk.text)
    usage_start = text.split("\n").index("## Usage") + 1
    assert any(c.start_line == usage_start for c in chunks)
    fenced = [c for c in chunks if "```bash" in c.text]
    assert len(fenced) == 1 and "make install" in fenced[0].text  # fence kept whole


def test_markdown_small_document_is_one_chunk():
    text = "# Title\n\nShort intro.\n\n## A\n\nText a.\n\n## B\n\nText b.\n"
    chunks = chunk_text(text, "markdown", words, ChunkingConfig(max_tokens=256))
    assert len(chunks) == 1
    assert chunks[0].section == "Title"
    assert (chunks[0].start_line, chunks[0].end_line) == (1, 11)


def test_markdown_big_sections_are_not_merged():
    rng = random.Random(2)
    text = f"# A\n\n{para(rng, 40)}\n\n# B\n\n{para(rng, 40)}\n"
    chunks = chunk_text(text, "markdown", words, ChunkingConfig(max_tokens=128))
    assert [c.section for c in chunks] == ["A", "B"]
    assert [c.text.split("\n")[0] for c in chunks] == ["# A", "# B"]


def test_markdown_setext_headings_and_front_matter():
    rng = random.Random(3)
    text = (
        f"---\ntitle: x\nother: y\n---\n\nTop\n===\n\n{para(rng, 30)}\n\n"
        f"Second\n------\n\n{para(rng, 30)}\n"
    )
    chunks = chunk_text(text, "markdown", words, ChunkingConfig(max_tokens=40, overlap_tokens=0))
    check_invariants(chunks, text, ChunkingConfig(max_tokens=40, overlap_tokens=0))
    # the front matter is not mistaken for a setext heading ("other: y" + "---")
    assert [c.section for c in chunks] == ["Top", "Top > Second"]
    assert chunks[0].text.startswith("---\ntitle: x")
    assert chunks[1].text.startswith("Second\n------")


def test_heading_not_left_at_end_of_chunk():
    rng = random.Random(4)
    text = f"# T\n\n{para(rng, 20)}\n\n### Sub\n\n{para(rng, 20)}\n"
    config = ChunkingConfig(max_tokens=32, overlap_tokens=0)
    chunks = chunk_text(text, "markdown", words, config)
    check_invariants(chunks, text, config)
    for chunk in chunks:
        assert not chunk.text.split("\n")[-1].startswith("#")
    assert any(c.text.startswith("### Sub") for c in chunks)


# --------------------------------------------------------------------------
# rst
# --------------------------------------------------------------------------


def test_rst_underline_headings():
    rng = random.Random(5)
    text = textwrap.dedent(
        f"""\
        =========
        The Title
        =========

        {para(rng, 10)}

        Installation
        ============

        {para(rng, 30)}

        From source
        -----------

        Run this::

            make build
            make install

        {para(rng, 10)}

        Usage
        =====

        {para(rng, 30)}
        """
    )
    config = ChunkingConfig(max_tokens=40, overlap_tokens=4)
    chunks = chunk_text(text, "rst", words, config)
    check_invariants(chunks, text, config)
    sections = {c.section for c in chunks}
    assert "The Title > Installation" in sections
    assert "The Title > Installation > From source" in sections
    assert "The Title > Usage" in sections
    literal = [c for c in chunks if "Run this::" in c.text]
    assert literal and "make install" in literal[0].text  # literal block kept with its paragraph
    usage_line = text.split("\n").index("Usage") + 1
    assert any(c.start_line == usage_line for c in chunks)


# --------------------------------------------------------------------------
# code
# --------------------------------------------------------------------------

PYTHON = '''\
"""Module docstring."""

import os


# helper that adds
@decorator
def add(a, b):
    total = a + b
    return total


class Retriever:
    """Finds things."""

    limit = 10

    def __init__(self, index):
        self.index = index
        self.cache = {}
        self.hits = 0

    def search(self, query, k=10):
        # look it up
        hits = self.index.query(query, k)
        self.hits += len(hits)
        return [hit for hit in hits if hit.score > 0.5]

    async def refresh(self):
        await self.index.reload()
        self.cache.clear()
'''


def test_python_split_at_definitions():
    config = ChunkingConfig(max_tokens=32, overlap_tokens=0)
    chunks = chunk_text(PYTHON, "code", words, config, language="python")
    check_invariants(chunks, PYTHON, config)
    by_section = {c.section: c for c in chunks}
    assert list(by_section) == [
        "def add",  # the tiny module preamble merged into it
        "class Retriever",  # the tiny class header merged with __init__
        "class Retriever > def search",
        "class Retriever > async def refresh",
    ]
    add = by_section["def add"]
    assert "# helper that adds\n@decorator\ndef add(a, b):" in add.text
    assert add.end_line == 10
    assert "def __init__" in by_section["class Retriever"].text
    search = by_section["class Retriever > def search"]
    assert search.text.startswith("    def search(self, query, k=10):")
    assert search.end_line == search.start_line + 4
    assert search.embed_text.startswith("class Retriever\n    def search")


def test_python_large_method_split_by_lines():
    config = ChunkingConfig(max_tokens=16, overlap_tokens=4)
    chunks = chunk_text(PYTHON, "code", words, config, language="python")
    check_invariants(chunks, PYTHON, config)
    search = [c for c in chunks if c.section == "class Retriever > def search"]
    assert len(search) >= 2
    assert search[0].text.startswith("    def search(")


def test_python_syntax_error_falls_back():
    source = (
        "def broken(:\n    one two three four five six\n\n\n"
        "def other():\n    return one two three four five\n"
    )
    config = ChunkingConfig(max_tokens=16, overlap_tokens=0)
    chunks = chunk_text(source, "code", words, config, language="python")
    check_invariants(chunks, source, config)
    assert [(c.start_line, c.section) for c in chunks] == [
        (1, "def broken("),
        (5, "def other()"),
    ]


def test_go_definitions():
    source = textwrap.dedent(
        """\
        package main

        import "fmt"

        // Greet says hello.
        func Greet(name string) string {
            msg := "hello " + name
            return msg
        }

        type Server struct {
            addr string
            port int
        }

        func (s *Server) Run() error {
            fmt.Println("running on", s.addr)
            return nil
        }
        """
    )
    config = ChunkingConfig(max_tokens=16, overlap_tokens=0)
    chunks = chunk_text(source, "code", words, config, language="go")
    check_invariants(chunks, source, config)
    sections = [c.section for c in chunks]
    assert "func Greet(name string) string" in sections
    assert "type Server struct" in sections
    assert "func (s *Server) Run() error" in sections
    greet = next(c for c in chunks if c.section == "func Greet(name string) string")
    assert greet.text.startswith("// Greet says hello.")


# --------------------------------------------------------------------------
# budget, overlap, long lines, counting
# --------------------------------------------------------------------------


def test_overlap_present_and_bounded():
    rng = random.Random(6)
    text = "\n".join(para(rng, rng.randint(3, 9)) for _ in range(80))
    config = ChunkingConfig(max_tokens=40, overlap_tokens=10)
    chunks = chunk_text(text, "text", words, config)
    check_invariants(chunks, text, config)
    assert len(chunks) > 5
    lines = text.split("\n")
    overlaps = []
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.start_line > prev.start_line  # progress
        shared = range(nxt.start_line, prev.end_line + 1)
        tokens = sum(len(lines[i - 1].split()) for i in shared)
        assert tokens <= config.overlap_tokens
        overlaps.append(len(shared))
    assert sum(1 for n in overlaps if n > 0) >= len(overlaps) // 2


def test_no_overlap_when_disabled():
    rng = random.Random(7)
    text = "\n".join(para(rng, 6) for _ in range(50))
    config = ChunkingConfig(max_tokens=30, overlap_tokens=0)
    chunks = chunk_text(text, "text", words, config)
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.start_line > prev.end_line


def test_no_overlap_across_hard_sections():
    rng = random.Random(8)
    text = f"# A\n\n{para(rng, 30)}\n\n# B\n\n{para(rng, 30)}\n"
    chunks = chunk_text(text, "markdown", words, ChunkingConfig(max_tokens=32, overlap_tokens=8))
    b_start = text.split("\n").index("# B") + 1
    assert any(c.start_line == b_start for c in chunks)
    assert all(not (c.start_line < b_start <= c.end_line) for c in chunks)


def test_long_line_split_by_characters():
    rng = random.Random(9)
    long_line = para(rng, 500)
    text = f"intro line\n\n{long_line}\n\noutro line"
    config = ChunkingConfig(max_tokens=50, overlap_tokens=5)
    chunks = chunk_text(text, "text", words, config)
    check_invariants(chunks, text, config)
    pieces = [c for c in chunks if c.start_line == c.end_line == 3]
    assert len(pieces) >= 10
    assert rebuild_long_line(chunks, 3) == long_line  # nothing lost or duplicated
    assert all(len(p.text.split()) <= 50 for p in pieces)


def test_split_long_line_without_spaces():
    line = "x" * 1000

    def chars(texts):  # one token per 4 characters
        return [(len(t) + 3) // 4 for t in texts]

    pieces = split_long_line(line, chars, 32)
    assert "".join(pieces) == line
    assert all(chars([p])[0] <= 32 for p in pieces)
    assert len(pieces) == 8


def test_counter_called_in_batches():
    rng = random.Random(10)
    text = "\n\n".join(para(rng, 12) for _ in range(200))
    counter = CountingCounter()
    chunks = chunk_text(text, "text", counter, ChunkingConfig(max_tokens=64))
    assert len(chunks) > 20
    assert len(counter.calls) == 2  # all lines at once, then one verification batch
    assert counter.calls[0] == len(text.split("\n")) + 2


def test_counter_with_special_tokens_respects_budget():
    rng = random.Random(11)
    text = "\n".join(para(rng, rng.randint(1, 12)) for _ in range(100))
    counter = CountingCounter(overhead=2)
    config = ChunkingConfig(max_tokens=32, overlap_tokens=6)
    chunks = chunk_text(text, "text", counter, config)
    check_invariants(chunks, text, config, counter=counter)
    # the overhead is paid once per chunk, not once per line
    assert max(counter([c.text for c in chunks])) >= 28


def test_counter_underestimated_by_lines_is_corrected():
    """Chunks are re-counted; a counter that charges for newlines still fits."""

    def with_newlines(texts):
        return [len(t.split()) + t.count("\n") * 3 for t in texts]

    rng = random.Random(12)
    text = "\n".join(para(rng, 3) for _ in range(60))
    config = ChunkingConfig(max_tokens=24, overlap_tokens=4)
    chunks = chunk_text(text, "text", with_newlines, config)
    check_invariants(chunks, text, config, counter=with_newlines)


def test_empty_and_blank_text():
    assert chunk_text("", "text", words) == []
    assert chunk_text("\n  \n\t\n", "markdown", words) == []


# --------------------------------------------------------------------------
# documents: PDF pages and HTML
# --------------------------------------------------------------------------


def test_pdf_pages_recorded():
    rng = random.Random(13)
    pages = ["\n".join(para(rng, 8) for _ in range(6)) for _ in range(4)]
    text = "\n".join(pages)
    starts = [1, 7, 13, 19]
    doc = Document(Path("/x/d.pdf"), "pdf", None, text, "pdf", starts)
    config = ChunkingConfig(max_tokens=40, overlap_tokens=8)
    chunks = chunk_document(doc, words, config)
    check_invariants(chunks, text, config)
    page_of_line = {line: (line - 1) // 6 + 1 for line in range(1, 25)}  # 6 lines a page
    for chunk in chunks:
        expected = sorted({page_of_line[n] for n in range(chunk.start_line, chunk.end_line + 1)})
        assert chunk.metadata["pages"] == expected
    assert any(len(c.metadata["pages"]) > 1 for c in chunks)  # chunks may span pages


def test_html_document_chunks_like_markdown():
    rng = random.Random(14)
    source = (
        "<html><body>\n<h1>Manual</h1>\n"
        f"<p>{para(rng, 10)}</p>\n<h2>Setup</h2>\n<p>{para(rng, 30)}</p>\n"
        f"<h2>Usage</h2>\n<p>{para(rng, 30)}</p>\n</body></html>\n"
    )
    doc = parse(Candidate(Path("/x/m.html"), "html", None), source.encode())
    assert isinstance(doc, Document)
    config = ChunkingConfig(max_tokens=40, overlap_tokens=0)
    chunks = chunk_document(doc, words, config)
    check_invariants(chunks, doc.text, config)
    assert {c.section for c in chunks} == {"Manual", "Manual > Usage"} | (
        {"Manual > Setup"} & {c.section for c in chunks}
    )
    usage = next(c for c in chunks if c.section == "Manual > Usage")
    assert usage.start_line == 6  # the line of <h2>Usage</h2> in the HTML source


# --------------------------------------------------------------------------
# property: random documents of every kind
# --------------------------------------------------------------------------


def random_document(rng: random.Random) -> tuple[str, str, str | None]:
    kind, language = rng.choice(
        [("markdown", None), ("rst", None), ("text", None), ("html", None),
         ("code", "python"), ("code", "go"), ("code", "yaml")]
    )  # fmt: skip
    parts: list[str] = []
    for _ in range(rng.randint(0, 25)):
        roll = rng.random()
        if roll < 0.15:
            parts.append("#" * rng.randint(1, 4) + " " + para(rng, rng.randint(1, 4)))
        elif roll < 0.22:
            title = para(rng, rng.randint(1, 3))
            parts.append(title + "\n" + rng.choice("=-~") * len(title))
        elif roll < 0.30:
            body = "\n".join(para(rng, rng.randint(0, 6)) for _ in range(rng.randint(1, 6)))
            parts.append("```\n" + body + "\n```")
        elif roll < 0.38:
            parts.append(f"def f{rng.randint(0, 99)}(x):\n    return x\n")
        elif roll < 0.44:
            parts.append(f"func F{rng.randint(0, 99)}() {{\n\treturn\n}}")
        elif roll < 0.48:
            parts.append(para(rng, rng.randint(60, 400)))  # very long line
        elif roll < 0.52:
            parts.append("   \n\t")  # whitespace-only lines
        elif roll < 0.58:
            parts.append("\n".join("- " + para(rng, rng.randint(1, 8)) for _ in range(4)))
        else:
            lines = rng.randint(1, 8)
            parts.append("\n".join(para(rng, rng.randint(0, 15)) for _ in range(lines)))
    separator = rng.choice(["\n", "\n\n", "\n\n\n"])
    return separator.join(parts), kind, language


def test_random_documents_keep_invariants():
    rng = random.Random(2024)
    for case in range(250):
        text, kind, language = random_document(rng)
        config = ChunkingConfig(
            max_tokens=rng.choice([16, 24, 48, 100]), overlap_tokens=rng.choice([0, 3, 8, 15])
        )
        try:
            chunks = chunk_text(text, kind, words, config, language=language)
            check_invariants(chunks, text, config)
            for prev, nxt in zip(chunks, chunks[1:]):
                assert (nxt.start_line, nxt.end_line) >= (prev.start_line, prev.end_line)
        except AssertionError as error:
            raise AssertionError(f"case {case} ({kind}, {language}, {config}): {error}") from None


def test_random_pdf_documents_record_pages():
    rng = random.Random(77)
    for _ in range(60):
        pages = [
            "\n".join(para(rng, rng.randint(0, 12)) for _ in range(rng.randint(1, 6)))
            for _ in range(rng.randint(1, 5))
        ]
        text = "\n".join(pages)
        starts, line = [], 1
        for page in pages:
            starts.append(line)
            line += page.count("\n") + 1
        doc = Document(Path("/x.pdf"), "pdf", None, text, "pdf", starts)
        config = ChunkingConfig(max_tokens=rng.choice([16, 32]), overlap_tokens=4)
        chunks = chunk_document(doc, words, config)
        check_invariants(chunks, text, config)
        for chunk in chunks:
            first = max(i + 1 for i, s in enumerate(starts) if s <= chunk.start_line)
            last = max(i + 1 for i, s in enumerate(starts) if s <= chunk.end_line)
            assert chunk.metadata["pages"] == list(range(first, last + 1))


# --------------------------------------------------------------------------
# property: hypothesis (when installed) explores odd line mixes and shrinks
# --------------------------------------------------------------------------

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - the random-loop test above still runs
    given = None

if given is not None:
    SPECIAL_LINES = [
        "# Heading", "## Sub", "### Deep", "Title", "=====", "-----", "```", "~~~",
        "def f(x):", "    return x", "class K:", "    def m(self):", "func G() {", "}",
        "- item", "1. first", "", "   ", "\t", "::", "    indented literal",
    ]  # fmt: skip
    line_strategy = st.one_of(
        st.sampled_from(SPECIAL_LINES),
        st.text(alphabet="ab cd#=-`*:\t{}()", max_size=30),
        st.lists(st.sampled_from(["w", "word", "x y"]), min_size=20, max_size=120).map(" ".join),
    )

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        lines=st.lists(line_strategy, max_size=40),
        kind=st.sampled_from(["markdown", "rst", "text", "html", "code:python", "code:go"]),
        max_tokens=st.integers(16, 48),
        overlap=st.integers(0, 15),
    )
    def test_hypothesis_invariants(lines, kind, max_tokens, overlap):
        text = "\n".join(lines)
        kind, _, language = kind.partition(":")
        config = ChunkingConfig(max_tokens=max_tokens, overlap_tokens=overlap)
        chunks = chunk_text(text, kind, words, config, language=language or None)
        check_invariants(chunks, text, config)
