"""The README's integration snippets run as written (on a tiny model instead of the default)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")
pytest.importorskip("mteb")

README = Path(__file__).resolve().parent.parent / "README.md"


def _snippets(heading: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {heading}\n")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_integration_snippets_run(tmp_path, monkeypatch, tiny_encoder):
    import compsearch.embedders as embedders
    from compsearch import Retriever

    from conftest import write_corpus

    # "the default encoder" is the tiny random model here: the snippets' mechanics are under test
    real = embedders.load_encoder
    monkeypatch.setattr(
        embedders,
        "load_encoder",
        lambda spec=None: tiny_encoder if spec in (None, "default") else real(spec),
    )
    monkeypatch.chdir(tmp_path)
    Retriever.open(".compsearch", tiny_encoder).index([write_corpus(tmp_path / "docs")])
    snippets = _snippets("Use with LangChain / LlamaIndex / a server")
    assert len(snippets) == 3
    for code in snippets:
        exec(compile(code, "README.md", "exec"), {})
    assert Retriever.open("notes-index").get(["note-1"])[0].text == "Logs rotate weekly on Sundays."
