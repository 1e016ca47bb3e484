"""Hostile sizes on the format 2 write path: a 200 MB file and a 50 MB single line end in a stated
skip (or, for the line under a raised limit, chunks), in seconds: never a hang or a traceback.

The files are sparse or written once per test; each test stays well under 30 s on a shared core.
"""

from __future__ import annotations

import time

import numpy as np
from click.testing import CliRunner

from compsearch import Retriever
from compsearch.chunking import ChunkingConfig, chunk_document
from compsearch.cli import main
from compsearch.documents import Document
from compsearch.maintenance import verify

from conftest import WORDS
from synthetic import TextSeeded

MB = 1_000_000


def _docs(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ok.md").write_text("# Title\n\njson parse value and rotate the log file\n")
    return docs


def _one_line(path, size: int) -> None:
    """``size`` bytes of words on one line, no newline."""
    rng = np.random.default_rng(0)
    block = " ".join(rng.choice(WORDS, 200_000)) + " "
    with open(path, "w") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.write(block[: size % len(block)].replace(" ", "x"))


def test_a_200_mb_file_is_a_stated_skip(tmp_path, tiny_encoder):
    docs = _docs(tmp_path)
    with open(docs / "huge.txt", "wb") as f:
        f.truncate(200 * MB)  # sparse: 200 MB of NUL bytes
    start = time.monotonic()
    report = Retriever.open(tmp_path / "ix", tiny_encoder).index([docs])
    assert report.files_indexed == 1
    assert [r for _, r in report.skipped] == ["too large (200.0 MB > 10.0 MB)"]
    out = CliRunner().invoke(main, ["index", str(docs), "--index", str(tmp_path / "ix"), "-v"])
    assert out.exit_code == 0 and "Traceback" not in out.output
    assert [ln for ln in out.output.splitlines() if "huge.txt" in ln] == [
        ln for ln in out.output.splitlines() if "too large (200.0 MB > 10.0 MB)" in ln
    ]
    # under a raised limit it is read, hashed, found binary: a stated skip again
    report = Retriever.open(tmp_path / "ix", tiny_encoder).index([docs], max_file_bytes=250 * MB)
    assert [r for _, r in report.skipped] == ["binary file"] and report.files_total == 1
    assert verify(tmp_path / "ix") == []
    assert time.monotonic() - start < 60


def test_a_50_mb_single_line(tmp_path):
    docs = _docs(tmp_path)
    line = docs / "one_line.txt"
    _one_line(line, 50 * MB)
    start = time.monotonic()
    report = Retriever.open(tmp_path / "ix", TextSeeded()).index([docs])
    assert report.files_indexed == 1
    assert [r for _, r in report.skipped] == ["too large (50.0 MB > 10.0 MB)"]
    assert verify(tmp_path / "ix") == []
    # the chunker cuts it in linear time (it used to copy the rest of the line for every piece,
    # over ten minutes for this line); the pieces give the line back
    text = line.read_text()
    doc = Document(path=line, kind="text", language=None, text=text, encoding="utf-8")
    chunks = chunk_document(doc, lambda ts: [len(t) // 4 for t in ts], ChunkingConfig())
    assert len(chunks) > 10_000 and all(c.start_line == c.end_line == 1 for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")
    assert time.monotonic() - start < 60
